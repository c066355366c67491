"""Tokenizers on the Hugging Face `tokenizers` library, built the way transformers builds them.

Sources: a `tokenizer.json` (+ `tokenizer_config.json`, `chat_template.jinja`), GGUF metadata
(`tokenizer.ggml.*`: byte-level BPE vocabulary + merges + token types), or a transformers tokenizer
object. `encode` gives the ids transformers' `tokenizer(text)["input_ids"]` gives; chat templates are
rendered with jinja2 in the same sandboxed environment transformers uses.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Sequence

from tokenizers import AddedToken, Regex, decoders, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from tokenizers.models import BPE

from .errors import ModelError, check_regular_file, read_json_object

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")

# GGUF `tokenizer.ggml.pre` names whose merges were learned on a split other than GPT-2's
# (the same table as transformers' GGUF tokenizer converter; regexes from the models' tokenizers).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN35_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_TEKKEN_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O_SPLIT = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GGUF_PRE_SPLITS = {
    **dict.fromkeys(
        ("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
         "dbrx", "smaug-bpe"),
        _LLAMA3_SPLIT,
    ),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez"), _QWEN2_SPLIT),
    "qwen35": _QWEN35_SPLIT,
    "tekken": _TEKKEN_SPLIT,
    **dict.fromkeys(("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"), _GPT4O_SPLIT),
}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def _token_text(value: Any) -> str | None:
    """A special token as written in tokenizer_config.json: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    """Text <-> token ids, special tokens and chat template of one model."""

    def __init__(
        self,
        backend: Backend,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        unk_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
        add_bos_token: bool | None = None,
        add_eos_token: bool | None = None,
        clean_up_tokenization_spaces: bool = False,
    ) -> None:
        """Wrap a `tokenizers.Tokenizer`. The special tokens are added to it as special (as transformers
        does). With `add_bos_token`/`add_eos_token` given, the post-processor is rebuilt from them."""
        self.backend = backend
        self.bos_token, self.eos_token, self.unk_token, self.pad_token = bos_token, eos_token, unk_token, pad_token
        self.chat_template = chat_template
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        specials = [t for t in (bos_token, eos_token, unk_token, pad_token) if t is not None]
        known = {t.content for t in backend.get_added_tokens_decoder().values()}
        missing = [AddedToken(t, special=True, normalized=False) for t in specials if t not in known]
        if missing:
            backend.add_special_tokens(missing)
        if add_bos_token is not None or add_eos_token is not None or backend.post_processor is None:
            self._set_post_processor(bool(add_bos_token), bool(add_eos_token))
        self._byte_table: list[bytes] | None = None

    def _set_post_processor(self, add_bos: bool, add_eos: bool) -> None:
        # Same template transformers' TokenizersBackend.update_post_processor writes.
        bos, eos = self.bos_token, self.eos_token
        add_bos, add_eos = add_bos and bos is not None, add_eos and eos is not None
        single = f"{(bos + ':0 ') if add_bos else ''}$A:0{(' ' + eos + ':0') if add_eos else ''}"
        pair = f"{single}{(' ' + bos + ':1') if add_bos else ''} $B:1{(' ' + eos + ':1') if add_eos else ''}"
        special = []
        if add_bos:
            special.append((bos, self.backend.token_to_id(bos)))
        if add_eos:
            special.append((eos, self.backend.token_to_id(eos)))
        self.backend.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)

    # ----- constructors -----
    @classmethod
    def from_file(cls, path: str | Path, config: dict[str, Any] | None = None) -> Tokenizer:
        """From a tokenizer.json; `config` is the tokenizer_config.json dict (special tokens, flags, template)."""
        if Path(path).exists():  # a missing file: the tokenizers library's own message below
            check_regular_file(path, "tokenizer file")
        try:
            backend = Backend.from_file(str(path))
        except Exception as exc:  # the tokenizers library raises plain Exceptions
            raise ModelError(f"cannot read tokenizer {str(path)!r}: {exc}") from None
        config = config or {}
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: transformers uses "default"
            template = {t["name"]: t["template"] for t in template}.get("default")
        return cls(
            backend,
            **{name: _token_text(config.get(name)) for name in SPECIAL_NAMES},
            chat_template=template,
            add_bos_token=config.get("add_bos_token"),
            add_eos_token=config.get("add_eos_token"),
            clean_up_tokenization_spaces=bool(config.get("clean_up_tokenization_spaces", False)),
        )

    @classmethod
    def from_folder(cls, folder: str | Path, check_path: Any = None) -> Tokenizer:
        """From a Hugging Face folder: tokenizer.json, tokenizer_config.json, chat_template.jinja/.json.
        check_path: called on each file before it is opened, returns the path to open or raises (a
        sandbox's access check)."""
        folder = Path(folder)

        def checked(name: str) -> Path:
            return Path(check_path(str(folder / name))) if check_path else folder / name

        config_path = folder / "tokenizer_config.json"
        config = read_json_object(checked("tokenizer_config.json"), "tokenizer file") if config_path.exists() else {}
        for name in ("special_tokens_map.json",):
            path = folder / name
            if path.exists():
                for key, value in read_json_object(checked(name), "tokenizer file").items():
                    config.setdefault(key, value)
        if (folder / "chat_template.jinja").exists():
            template_path = checked("chat_template.jinja")
            check_regular_file(template_path, "tokenizer file")
            config["chat_template"] = template_path.read_text(encoding="utf-8")
        elif (folder / "chat_template.json").exists():
            template = read_json_object(checked("chat_template.json"), "tokenizer file").get("chat_template")
            if not isinstance(template, str):
                raise ModelError(f"{str(folder / 'chat_template.json')!r}: \"chat_template\" must be a string")
            config["chat_template"] = template
        return cls.from_file(checked("tokenizer.json"), config)

    def save(self, folder: str | Path) -> None:
        """Write the tokenizer as a Hugging Face folder (tokenizer.json, tokenizer_config.json with the
        special tokens and chat template) that `from_folder` and transformers' AutoTokenizer read back."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tokenizer.json").write_text(self.backend.to_str(), encoding="utf-8")
        config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast"}
        config.update((name, getattr(self, name)) for name in SPECIAL_NAMES)
        config["clean_up_tokenization_spaces"] = self.clean_up_tokenization_spaces
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        (folder / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=1),
                                                      encoding="utf-8")

    @classmethod
    def from_gguf(cls, source: Any) -> Tokenizer:
        """From GGUF metadata: a path, our GGUFFile, or a `gguf.GGUFReader`.

        Byte-level BPE ("gpt2": SmolLM, Llama 3, Qwen) and SentencePiece BPE ("llama": Llama 2,
        Mistral, TinyLlama) vocabularies, built as transformers' GGUF converter builds them.
        """
        meta = _gguf_metadata(source)
        kind = meta.get("tokenizer.ggml.model")
        arch = meta.get("general.architecture")
        if kind == "gpt2":
            backend, control_ok = _byte_level_from_gguf(meta)
            add_bos_default = False
        elif kind == "llama" and arch not in ("gemma", "gemma2", "gemma3", "phi3"):
            backend, control_ok = _sentencepiece_from_gguf(meta)
            add_bos_default = True  # llama.cpp adds BOS to a sentencepiece vocabulary that does not say otherwise
        else:
            raise ModelError(
                f"GGUF tokenizer {kind!r} (architecture {arch!r}) is not supported (byte-level 'gpt2' and "
                "sentencepiece 'llama' are); use the model's Hugging Face folder with its tokenizer.json"
            )
        tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
        types = [int(t) for t in meta.get("tokenizer.ggml.token_type", ())]
        # CONTROL tokens become special (kept whole, skippable); USER_DEFINED ones plain added tokens.
        control = [AddedToken(t, special=True, normalized=False)
                   for t, ty in zip(tokens, types) if ty == _CONTROL and control_ok(t)]
        if control:
            backend.add_special_tokens(control)
        # token_to_id, not get_vocab(): that builds a dict of the whole vocabulary (Llama 3: 128k strings)
        user = [AddedToken(t, special=False, normalized=False)
                for t, ty in zip(tokens, types) if ty == _USER_DEFINED and backend.token_to_id(t) is not None]
        if user:
            backend.add_tokens(user)

        def special(key: str) -> str | None:
            index = meta.get(f"tokenizer.ggml.{key}")
            return tokens[int(index)] if index is not None and 0 <= int(index) < len(tokens) else None

        return cls(
            backend,
            bos_token=special("bos_token_id"),
            eos_token=special("eos_token_id"),
            unk_token=special("unknown_token_id"),
            pad_token=special("padding_token_id"),
            chat_template=meta.get("tokenizer.chat_template"),
            add_bos_token=bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default)),
            add_eos_token=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        )

    @classmethod
    def from_hf(cls, hf_tokenizer: Any) -> Tokenizer:
        """From a transformers (fast) tokenizer object: same backend, special tokens and chat template."""
        backend = getattr(hf_tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise ModelError("only fast (tokenizers-backed) transformers tokenizers can be converted")
        return cls(
            Backend.from_str(backend.to_str()),
            **{name: getattr(hf_tokenizer, name, None) for name in SPECIAL_NAMES},
            chat_template=getattr(hf_tokenizer, "chat_template", None),
            clean_up_tokenization_spaces=bool(getattr(hf_tokenizer, "clean_up_tokenization_spaces", False)),
        )

    # ----- ids -----
    def _id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_token_id(self) -> int | None:
        return self._id(self.bos_token)

    @property
    def eos_token_id(self) -> int | None:
        return self._id(self.eos_token)

    @property
    def pad_token_id(self) -> int | None:
        return self._id(self.pad_token)

    @property
    def unk_token_id(self) -> int | None:
        return self._id(self.unk_token)

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included (transformers' len(tokenizer))."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every special token (skipped by `decode(..., skip_special_tokens=True)`)."""
        return sorted(i for i, t in self.backend.get_added_tokens_decoder().items() if t.special)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self.backend.id_to_token(index)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text` (with the BOS/EOS the model's post-processor adds when add_special_tokens)."""
        if not isinstance(text, str):
            raise ModelError(f"encode expects a string, got {type(text).__name__}")
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        """`encode` for several texts (no padding)."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of token ids (as transformers' `tokenizer.decode`)."""
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces:
            for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(a, b)
        return text

    # ----- chat -----
    def render_chat(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        chat_template: str | None = None,
        **kwargs: Any,
    ) -> str:
        """The chat as text, rendered with the chat template exactly as transformers renders it."""
        template = chat_template or self.chat_template
        if template is None:
            raise ModelError("this tokenizer has no chat template")
        if not isinstance(messages, list) or not messages:
            raise ModelError("a chat is a non-empty list of messages ({'role': ..., 'content': ...})")
        chat = []
        for message in messages:
            if not isinstance(message, dict):
                raise ModelError(f"a chat message must be a dict with role and content, got {message!r}")
            message = {k: v for k, v in message.items() if v is not None}
            reasoning = next((message[k] for k in ("reasoning_content", "thinking", "reasoning") if k in message), None)
            if reasoning is not None:
                message = {"thinking": reasoning, **message, "reasoning_content": reasoning}
            chat.append(message)
        variables = {name: getattr(self, name) for name in SPECIAL_NAMES if getattr(self, name) is not None}
        variables.update(kwargs)
        variables.setdefault("tools", None)
        variables.setdefault("documents", None)
        import jinja2

        try:
            return _compile(template).render(messages=chat, add_generation_prompt=add_generation_prompt, **variables)
        except jinja2.TemplateError as exc:
            raise ModelError(f"chat template error: {exc}") from None

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **kwargs: Any
    ) -> list[int]:
        """Token ids of the rendered chat (encoded without adding special tokens, as transformers does)."""
        return self.encode(self.render_chat(messages, add_generation_prompt, **kwargs), add_special_tokens=False)

    # ----- streaming -----
    def token_bytes(self, index: int) -> bytes | None:
        """The exact bytes a byte-level BPE token stands for (None for other vocabularies)."""
        if self._byte_table is None:
            decode = {c: b for b, c in bytes_to_unicode().items()}
            if not isinstance(self.backend.decoder, decoders.ByteLevel):
                return None
            table = []
            specials = self.backend.get_added_tokens_decoder()
            for i in range(self.vocab_size):
                token = self.backend.id_to_token(i) or ""
                if i in specials:
                    table.append(token.encode("utf-8"))
                else:
                    table.append(bytes(decode[c] for c in token if c in decode))
            self._byte_table = table
        return self._byte_table[index] if 0 <= index < len(self._byte_table) else b""

    def stream_decoder(self, skip_special_tokens: bool = True) -> StreamDecoder:
        """An incremental detokenizer for streaming generated tokens."""
        return StreamDecoder(self, skip_special_tokens)

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, eos={self.eos_token!r})"


class StreamDecoder:
    """Token ids -> text pieces that never split a UTF-8 character; their concatenation is the decoded text.

    Byte-level vocabularies: exact bytes per token, buffered until they form whole characters (O(1)
    per token). Other vocabularies: decode a short window with and without the new token and emit
    the difference, holding back a trailing U+FFFD.
    """

    _WINDOW = 6

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.special = set(tokenizer.all_special_ids)
        self.byte_level = tokenizer.token_bytes(0) is not None
        self._pending = b""
        self._ids: list[int] = []
        self._emitted = ""

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while a character is incomplete)."""
        token_id = int(token_id)
        if self.skip and token_id in self.special:
            return ""
        if self.byte_level:
            self._pending += self.tokenizer.token_bytes(token_id)
            return self._take_complete()
        self._ids.append(token_id)
        text = self.tokenizer.decode(self._ids, skip_special_tokens=self.skip)
        if text.endswith("\ufffd"):
            return ""
        piece = text[len(self._emitted):] if text.startswith(self._emitted) else text
        if len(self._ids) > self._WINDOW:  # keep the window short; remember what it decodes to
            self._ids = self._ids[-self._WINDOW:]
            self._emitted = self.tokenizer.decode(self._ids, skip_special_tokens=self.skip)
        else:
            self._emitted = text
        return piece

    def _take_complete(self) -> str:
        data = self._pending
        cut = len(data)
        # Back off over an incomplete trailing UTF-8 sequence (at most 3 bytes).
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte & 0xC0 == 0x80:
                continue
            if byte >= 0xC0:
                need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
                if need > back:
                    cut = len(data) - back
            break
        self._pending = data[cut:]
        return data[:cut].decode("utf-8", errors="replace")

    def flush(self) -> str:
        """Whatever is still held back, less a character the stream left incomplete (the stream was
        cut between two bytes of it): it is dropped, never shown as U+FFFD."""
        if self.byte_level:
            data, self._pending = self._pending, b""
            return data.decode("utf-8", errors="replace").rstrip("\ufffd")
        return ""


# ----- GGUF vocabularies -----

def _byte_level_from_gguf(meta: dict[str, Any]):
    tokens = list(meta["tokenizer.ggml.tokens"])
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    # Tokens are stored as text; the BPE model wants them in the byte alphabet.
    vocab = {
        (t if set(t) <= alphabet else "".join(spelling[b] for b in t.encode("utf-8"))): i
        for i, t in enumerate(tokens)
    }
    merges = [tuple(m.split(" ")) for m in meta.get("tokenizer.ggml.merges", ())]
    backend = Backend(
        BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="", end_of_word_suffix="",
            fuse_unk=False)
    )
    split = GGUF_PRE_SPLITS.get(meta.get("tokenizer.ggml.pre"))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(split), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    backend.decoder = decoders.ByteLevel()
    # A CONTROL token outside the byte alphabet is a llama.cpp mislabel; adding it would grow the vocabulary.
    return backend, lambda token: set(token) <= alphabet


def _sentencepiece_from_gguf(meta: dict[str, Any]):
    tokens = list(meta["tokenizer.ggml.tokens"])
    vocab = {t: i for i, t in enumerate(tokens)}
    if "tokenizer.ggml.merges" in meta:
        merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    else:
        merges = _merges_from_scores(vocab, dict(zip(tokens, (float(x) for x in meta["tokenizer.ggml.scores"]))))
    backend = Backend(BPE(vocab=vocab, merges=merges, fuse_unk=True, byte_fallback=True, dropout=None))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    backend.decoder = decoders.Sequence(
        [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return backend, lambda token: True


def _merges_from_scores(vocab: dict[str, int], scores: dict[str, float]) -> list[tuple[str, str]]:
    """BPE merges implied by a sentencepiece vocabulary: every split of a token into two tokens,
    best score first (the order transformers' `generate_merges` gives)."""
    merges = []
    for merge, score in scores.items():
        local = [(merge[:i], merge[i:], score) for i in range(1, len(merge)) if merge[:i] in vocab and merge[i:] in vocab]
        local.sort(key=lambda x: (vocab[x[0]], vocab[x[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(a, b) for a, b, _ in merges]


# ----- jinja2, as transformers configures it -----

@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        # transformers' {% generation %} marks assistant text for masks; rendering just emits the body.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    env.globals["dict"] = dict
    try:
        return env.from_string(template)
    except jinja2.TemplateError as exc:
        raise ModelError(f"chat template does not compile: {exc}") from None


def _gguf_metadata(source: Any) -> dict[str, Any]:
    """Metadata dict from a path, our GGUFFile, or a gguf.GGUFReader."""
    from .gguf_loader import GGUFFile

    if isinstance(source, (str, Path)):
        source = GGUFFile(source)
    if isinstance(source, GGUFFile):
        return source.metadata
    fields = getattr(source, "fields", None)
    if fields is None:
        raise ModelError(f"expected a GGUF path, GGUFFile or gguf.GGUFReader, got {type(source).__name__}")
    return {name: field.contents() for name, field in fields.items() if name.startswith("tokenizer.")}


