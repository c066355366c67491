"""`lispe chat`: a conversation with an instruct model in the terminal.

    lispe chat [MODEL] [--system TEXT] [--dtype D] [--quantize Q] [--verbose]

MODEL is anything `torch_hf_load_model` takes (default: the embedded SmolLM2-135M-Instruct). Each
answer is streamed as it is generated, without special tokens. The model's prompt cache is on, so a
turn runs only the new part of the conversation through the model: the earlier turns stay in the KV
cache. Lines starting with `/` are commands (`/help`). Ctrl-C during an answer stops it (the part
already shown stays in the conversation); Ctrl-D (or `/quit`) leaves with status 0.

The model is loaded and configured through the lispe_torch builtins of a LispE interpreter, so a bad
model path or a bad `/config` key gets the same LispE error as in a program. See docs/chat.md.
"""
from __future__ import annotations

import json
import signal
import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator, Sequence, TextIO

from .hints import closest

DEFAULT_MODEL = "SmolLM2-135M-Instruct"

#: Generation settings of a chat (changed with `/config`): nucleus sampling at a low temperature (what
#: SmolLM2's model card uses), a mild repetition penalty (small models loop otherwise), and room for a
#: few paragraphs per answer.
DEFAULT_CONFIG: dict[str, Any] = {"strategy": "top_p", "temperature": 0.2, "top_p": 0.9,
                                  "repetition_penalty": 1.1, "max_length": 512}

#: Keys `/config` shows when it is given no key.
SHOWN_KEYS = ("strategy", "max_length", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
              "seed", "stop")

PROMPT = ">>> "

USAGE = """usage: lispe chat [MODEL] [options]

Chat with an instruct model: answers stream as they are generated, earlier turns stay in the KV cache.

  MODEL              a Hugging Face folder, a .gguf file, or any other torch_hf_load_model argument
                     (default: SmolLM2-135M-Instruct)

options:
  --system TEXT      the system prompt (default: the chat template's own, if it has one)
  --dtype D          load the weights as float32 (default), bfloat16 or float16
  --quantize Q       quantize the weights: int8 or int4
  --device D         cpu (default), cuda, cuda:N or mps
  --verbose          after each answer, show the prompt tokens reused from the cache and the speed
  -h, --help         show this help and exit

In the chat, /help lists the commands; Ctrl-C stops an answer, Ctrl-D leaves.
"""

COMMANDS: dict[str, str] = {
    "/reset": "/reset              forget the conversation (the system prompt stays)",
    "/system": "/system TEXT         set the system prompt (/system alone shows it)",
    "/save": "/save FILE           write the conversation to FILE as JSON ({\"messages\": [...]})",
    "/config": "/config KEY VALUE    change a generation setting (/config alone shows them)",
    "/help": "/help                this list",
    "/quit": "/quit                leave (also /exit and Ctrl-D)",
}


class ChatUsage(Exception):
    """A bad `lispe chat` command line (exit status 2)."""


def parse_args(argv: Sequence[str]) -> dict[str, Any]:
    """The options of `lispe chat` (argv without the word `chat`)."""
    opts: dict[str, Any] = {"model": None, "system": None, "dtype": None, "quantize": None,
                            "device": None, "verbose": False, "help": False}
    values = {"--system": "system", "--dtype": "dtype", "--quantize": "quantize", "--device": "device"}
    args = list(argv)
    i = 0
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if a in ("-h", "--help"):
            opts["help"] = True
        elif a == "--verbose":
            opts["verbose"] = True
        elif name in values:
            if "=" in a:
                value = a.split("=", 1)[1]
            elif i + 1 < len(args):
                i += 1
                value = args[i]
            else:
                raise ChatUsage(f"{a} needs a value")
            opts[values[name]] = value
        elif a.startswith("-") and len(a) > 1:
            raise ChatUsage(f"unknown option {a}")
        elif opts["model"] is None:
            opts["model"] = a
        else:
            raise ChatUsage(f"one model only (got {opts['model']!r} and {a!r})")
        i += 1
    return opts


class Chat:
    """One conversation with a model: the messages, the generator's settings, and the commands.

    `ask(text)` streams the answer to `out` and returns it; `handle(line)` runs a command or asks.
    Errors are LispE errors (`lispe_py.LispEError`), raised to the caller.
    """

    def __init__(self, model: str | None = None, *, system: str | None = None, dtype: str | None = None,
                 quantize: str | None = None, device: str | None = None, out: TextIO | None = None,
                 verbose: bool = False) -> None:
        from . import Interpreter, LispEError

        self.out = out if out is not None else sys.stdout
        self.verbose = verbose
        self.model_name = model or DEFAULT_MODEL
        self.interp = Interpreter()
        self.interp.eval("(use 'lispe_torch)")
        load: dict[str, Any] = {"prompt_cache": True}
        for key, value in (("dtype", dtype), ("quantize", quantize), ("device", device)):
            if value is not None:
                load[key] = value
        self.model = self.interp.call("torch_hf_load_model", self.model_name, load)
        self.tokenizer = self.model.tokenizer
        if self.tokenizer is None or not self.tokenizer.chat_template:
            raise LispEError(f"chat: the model {self.model_name!r} has no chat template; lispe chat needs "
                             f"an instruct (chat) model whose tokenizer has one")
        self.generator = self.interp.call("torch_generator_create", self.model)
        defaults = dict(DEFAULT_CONFIG)
        context = self.model.config.max_position_embeddings
        defaults["max_length"] = min(defaults["max_length"], max(1, context // 2))  # small contexts
        self.interp.call("torch_generator_config", self.generator, defaults)
        self.system = system
        self.messages: list[dict[str, str]] = []
        self.last_stats: dict[str, Any] = {}
        self._stop_requested = False

    # ---------------------------------------------------------------------------- conversation
    def conversation(self) -> list[dict[str, str]]:
        """The messages as the chat template gets them: the system prompt (if set), then the turns."""
        head = [{"role": "system", "content": self.system}] if self.system is not None else []
        return head + [dict(m) for m in self.messages]

    def request_stop(self) -> None:
        """Ctrl-C during an answer (the SIGINT handler of `lispe chat` calls this): the answer stops
        before its next piece is shown. A second request before the answer has stopped (a long prompt
        still running through the model) raises KeyboardInterrupt at once."""
        if self._stop_requested:
            raise KeyboardInterrupt
        self._stop_requested = True

    def ask(self, text: str) -> str:
        """Add the user's message, stream the answer to `out`, keep it in the conversation; return it.

        `request_stop()` (Ctrl-C) ends the answer between two tokens: what was shown stays in the
        conversation (an answer stopped before its first piece is dropped with its question), and the
        KV cache holds exactly the tokens run so far. A KeyboardInterrupt (a second Ctrl-C) stops it
        at once, in the middle of a step: the prompt cache then forgets the slot being written. A
        generation error drops the question and raises a LispEError."""
        from .errors import LispEError
        from .generation import GenerationError, stream
        from .models import ModelError

        self._stop_requested = False
        self.messages.append({"role": "user", "content": text})
        try:
            ids = self.tokenizer.apply_chat_template(self.conversation(), add_generation_prompt=True)
        except ModelError as exc:  # a template that refuses the conversation (e.g. no system role)
            self.messages.pop()
            raise LispEError(f"chat: {exc}") from None
        model = self.model
        reused = model.cached_prefix(_long(ids))
        pieces: list[str] = []
        produced = 0
        started = time.perf_counter()
        events = None
        try:
            config = self.generator.config
            room = model.config.max_position_embeddings - len(ids)
            if room < 1:
                raise LispEError(f"chat: the conversation ({len(ids)} tokens) fills the model's context of "
                                 f"{model.config.max_position_embeddings} tokens: /reset starts a new one")
            if config.max_length > room:  # a long conversation: the answer gets what is left
                config = config.update({"max_length": room})
            events = stream(model, ids, config, tokenizer=self.tokenizer)
            for _token, piece in events:
                if self._stop_requested:
                    break
                produced += 1
                if piece:
                    self._write(piece)
                    pieces.append(piece)
        except KeyboardInterrupt:
            _forget_unfinished(model, reused if produced == 0 else len(ids) + produced - 1)
            return self._stopped(events, pieces, produced)
        except (GenerationError, ModelError) as exc:
            self.messages.pop()
            raise LispEError(f"chat: {exc}") from None
        except LispEError:
            self.messages.pop()
            raise
        if self._stop_requested:
            return self._stopped(events, pieces, produced)
        answer = "".join(pieces)
        self.messages.append({"role": "assistant", "content": answer})
        seconds = time.perf_counter() - started
        self.last_stats = {"prompt_tokens": len(ids), "reused": model.last_prefill_start,
                           "new_tokens": produced, "seconds": seconds}
        self._write("\n" if not answer.endswith("\n") else "")
        if self.verbose:
            rate = produced / seconds if seconds > 0 else 0.0
            self._write(f"[prompt {len(ids)} tokens, {model.last_prefill_start} reused from the cache; "
                        f"{produced} new tokens in {seconds:.2f} s, {rate:.1f} tokens/s]\n")
        return answer

    def _stopped(self, events: Any, pieces: list[str], produced: int) -> str:
        """End a stopped answer: keep what was shown (drop the question when nothing was)."""
        self._stop_requested = False
        if events is not None:
            events.close()
        answer = "".join(pieces)
        self._write("\n[stopped]\n" if answer else "[stopped]\n")
        if answer:
            self.messages.append({"role": "assistant", "content": answer})
        else:
            self.messages.pop()
        self.last_stats = {"new_tokens": produced, "stopped": True}
        return answer

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.messages.clear()

    def save(self, path: str) -> None:
        """Write `{"model": name, "messages": [...]}` (system prompt first, if set) to `path`."""
        from .errors import LispEError

        data = {"model": self.model_name, "messages": self.conversation()}
        try:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, indent=2)
                fh.write("\n")
        except OSError as exc:
            raise LispEError(f"/save: cannot write {path}: {exc.strerror or exc}") from None

    def configure(self, key: str, value_text: str) -> Any:
        """`/config KEY VALUE`: VALUE is read as LispE (a bare word is a string: `strategy greedy`;
        a list is data: `stop ("\\n\\n")`); the generator's config error is raised for a bad key or
        value, and the settings are then unchanged. Returns the value set."""
        from . import reader
        from .errors import LispEError
        from .values import Symbol

        forms = reader.read(value_text, "<config>")
        if len(forms) != 1:
            raise LispEError(f"/config {key}: expected one value, got {len(forms)}: /config KEY VALUE")
        form = forms[0]
        if isinstance(form, Symbol) and str(form) not in ("nil", "true"):
            value: Any = str(form)
        elif isinstance(form, list):
            value = self.interp.run_source(f"(quote {value_text})", "<config>")
        else:
            value = self.interp.run_source(value_text, "<config>")
        self.interp.call("torch_generator_config", self.generator, {key: value})
        return value

    def settings(self) -> dict[str, Any]:
        info = self.interp.call("torch_generator_info", self.generator)
        return {k: info.get(k) for k in SHOWN_KEYS}

    # ---------------------------------------------------------------------------- commands
    def handle(self, line: str) -> bool:
        """Run one input line: a /command or a question. Returns False when the chat should end."""
        text = line.strip()
        if not text:
            return True
        if not text.startswith("/"):
            self.ask(line.rstrip("\n"))
            return True
        word, _, rest = text.partition(" ")
        rest = rest.strip()
        if word in ("/quit", "/exit", "/bye"):
            return False
        if word == "/help":
            self._write("\n".join(COMMANDS.values()) + "\n")
        elif word == "/reset":
            self.reset()
            self._write("(conversation cleared)\n")
        elif word == "/system":
            if rest:
                self.system = rest
                self._write("(system prompt set)\n")
            else:
                shown = self.system if self.system is not None else "(the chat template's default)"
                self._write(shown + "\n")
        elif word == "/save":
            if not rest:
                raise _error("/save needs a file name: /save FILE")
            self.save(rest)
            self._write(f"(saved {len(self.conversation())} messages to {rest})\n")
        elif word == "/config":
            self._config_command(rest)
        else:
            near = closest(word, list(COMMANDS) + ["/exit"])
            hint = f"; did you mean {near}?" if near else ""
            raise _error(f"unknown command {word}{hint} (/help lists the commands)")
        return True

    def _config_command(self, rest: str) -> None:
        from .printer import repr_string

        key, _, value = rest.partition(" ")
        if not key:
            for k, v in self.settings().items():
                self._write(f"{k} {repr_string(v)}\n")
            return
        if not value.strip():
            info = self.interp.call("torch_generator_info", self.generator)
            canonical = "max_length" if key == "max_new_tokens" else key
            if canonical not in info:
                self.configure(key, "nil")  # the config's own error for an unknown key
            self._write(f"{canonical} {repr_string(info.get(canonical))}\n")
            return
        set_to = self.configure(key, value.strip())
        self._write(f"({key} = {repr_string(set_to)})\n")

    def _write(self, text: str) -> None:
        if text:
            self.out.write(text)
            self.out.flush()


def _error(message: str) -> Exception:
    from .errors import LispEError

    return LispEError(message)


def _long(ids: list[int]) -> Any:
    import torch

    return torch.tensor(ids, dtype=torch.long)


def _forget_unfinished(model: Any, keep: int) -> None:
    """After an interrupted generation, the prompt cache must not vouch for a slot whose decode step
    was cut in the middle (some layers written, others not): keep only the record of the `keep`
    slots known to be complete (the prompt tokens before this call's prefill, or the prompt and
    every generated token but the last one)."""
    if getattr(model, "_cached_len", 0) > keep:
        model._cached_len = max(keep, 0)


# -------------------------------------------------------------------------------- the terminal loop
@contextmanager
def _stop_on_sigint(chat: Chat) -> Iterator[None]:
    """While a line is handled, SIGINT asks the answer to stop (`Chat.request_stop`): a second one
    raises KeyboardInterrupt. Only the main thread can set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: chat.request_stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (OSError, ValueError, AttributeError):
        return False


def _line_reader(tty: bool) -> Any:
    """A function returning the next input line (EOFError at the end): prompt_toolkit on a terminal,
    plain lines from stdin otherwise."""
    if tty:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import InMemoryHistory

        session: Any = PromptSession(history=InMemoryHistory())
        return lambda: session.prompt(PROMPT)

    def read_line() -> str:
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    return read_line


def _error_line(text: str, tty: bool) -> None:
    if tty:
        text = f"\x1b[31m{text}\x1b[0m"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run_chat(argv: Sequence[str]) -> int:
    """`lispe chat ...`: returns the exit status (0 at Ctrl-D or /quit, 1 when the model cannot be
    loaded, 2 on a bad command line)."""
    from .errors import LispEError

    try:
        opts = parse_args(argv)
    except ChatUsage as exc:
        sys.stderr.write(f"lispe chat: {exc}\n{USAGE}")
        return 2
    if opts["help"]:
        sys.stdout.write(USAGE)
        return 0
    tty = _isatty(sys.stdin) and _isatty(sys.stdout)
    try:
        chat = Chat(opts["model"], system=opts["system"], dtype=opts["dtype"], quantize=opts["quantize"],
                    device=opts["device"], verbose=opts["verbose"])
    except LispEError as exc:
        _error_line(exc.format(), _isatty(sys.stderr))
        return 1
    if tty:
        sys.stdout.write(f"Chatting with {chat.model_name}. /help for commands, Ctrl-C stops an answer, "
                         f"Ctrl-D leaves.\n")
        sys.stdout.flush()
    read_line = _line_reader(tty)
    while True:
        try:  # a Ctrl-C between two lines (no handler of ours is set there) is ignored too
            try:
                if not tty:
                    sys.stdout.write(PROMPT)
                    sys.stdout.flush()
                line = read_line()
            except EOFError:
                if not tty:
                    sys.stdout.write("\n")
                return 0
            except KeyboardInterrupt:  # Ctrl-C at the prompt: the input is dropped
                continue
            try:
                with _stop_on_sigint(chat):
                    if not chat.handle(line):
                        return 0
            except LispEError as exc:
                _error_line(exc.format(), _isatty(sys.stderr))
            except Exception as exc:  # a bug of ours: one line, no traceback, and the chat goes on
                _error_line(f"Error: internal error: {type(exc).__name__}: {exc}", _isatty(sys.stderr))
            except KeyboardInterrupt:  # a second Ctrl-C during a command other than an answer
                sys.stdout.write("\n[stopped]\n")
                sys.stdout.flush()
            chat._stop_requested = False  # a Ctrl-C during a command does not stop the next answer
        except KeyboardInterrupt:
            continue
