"""Tokenizers: load, encode, decode, chat templates."""
from __future__ import annotations

from typing import Any


from ...builtins._common import describe
from ...builtins.registry import builtin
from ...errors import LispEError
from ...models.loading import EMBEDDED_MODELS, embedded_model_path
from ...models.tokenizer import Tokenizer
from ...engines import Engine
from ...models import DecoderModel
from ...values import Integers, Strings, truthy
from ..torch_values import TorchGenerator, arg_error, core_errors, expect_str, ids_to_list

from ._common import _set_default_tokenizer, _split_tokenizer, LIB, G_TOK
from .models import _path_check, _resolve_path

# what may stand for a tokenizer as a first argument
_TOKENIZER_OWNERS = (Tokenizer, DecoderModel, TorchGenerator, Engine)


@builtin("tokenizer_load", group=G_TOK, library=LIB, ctx=True)
def tokenizer_load(ctx: Any, path: Any) -> Tokenizer:
    """(tokenizer_load "path/to/tokenizer.json")

    Loads a tokenizer from a tokenizer.json, a model folder, a .gguf file, or the name of the embedded
    model ("SmolLM2-135M-Instruct"); it becomes the default tokenizer.
    """
    fname = "tokenizer_load"
    path = expect_str(fname, "path", path)
    with core_errors(fname):
        check = _path_check(ctx, fname)
        if path in EMBEDDED_MODELS:
            p = embedded_model_path(path)
        else:
            p = _resolve_path(ctx, path, fname)
            if not p.exists():
                raise LispEError(f"{fname}: argument 'path': no file or folder at \"{path}\"")
        if p.is_dir():
            ggufs = sorted(p.glob("*.gguf"))
            if not (p / "tokenizer.json").exists() and ggufs:
                tok = Tokenizer.from_gguf(check(ggufs[0]) if check else str(ggufs[0]))
            else:
                tok = Tokenizer.from_folder(p, check_path=check)
        elif p.suffix == ".gguf":
            tok = Tokenizer.from_gguf(str(p))
        else:
            tok = Tokenizer.from_file(p)
    _set_default_tokenizer(ctx, tok)
    return tok


@builtin("tokenizer_encode", "torch_encode", group=G_TOK, library=LIB, min_args=1, max_args=2, ctx=True)
def tokenizer_encode(ctx: Any, *args: Any) -> Integers:
    """(tokenizer_encode "Hello world")

    Token ids of a text (integers), with the default tokenizer or the one given first:
    (tokenizer_encode tok "Hello world"). A model or generator may stand for its tokenizer.
    """
    fname = "tokenizer_encode"
    tok, (text,) = _split_tokenizer(fname, ctx, args, 1)
    text = expect_str(fname, "text", text)
    with core_errors(fname):
        return Integers(tok.encode(text))


@builtin("tokenizer_decode", "torch_decode", group=G_TOK, library=LIB, min_args=1, max_args=3, ctx=True)
def tokenizer_decode(ctx: Any, *args: Any) -> Any:
    """(tokenizer_decode ids)

    The text of token ids: integers, a list, or a 1-D tensor -> a string; a 2-D tensor or a list of
    lists -> a list of strings (one per row). Special tokens (<|im_end|>, </s>, ...) and a character cut
    in half at the end are left out, so a generated answer reads cleanly; (tokenizer_decode ids false)
    keeps everything (decode then undoes encode).
    A tokenizer, model or generator may come first: (tokenizer_decode tok ids).
    """
    fname = "tokenizer_decode"
    skip = True
    if len(args) == 3 or (len(args) == 2 and not isinstance(args[0], _TOKENIZER_OWNERS)):
        args, skip = args[:-1], truthy(args[-1])
    tok, (ids,) = _split_tokenizer(fname, ctx, args, 1)
    rows = ids_to_list(fname, "ids", ids)
    vocab = tok.vocab_size
    flat = [x for r in rows for x in (r if isinstance(r, list) else [r])]
    bad = [x for x in flat if not 0 <= x < vocab] if vocab is not None else []   # None: a server checks
    if bad:
        raise LispEError(f"{fname}: argument 'ids': token ids {bad[:5]} are outside the tokenizer's "
                         f"vocabulary (0..{vocab - 1})")
    with core_errors(fname):
        if rows and isinstance(rows[0], list):
            return Strings(_text(tok, r, skip) for r in rows)
        return _text(tok, rows, skip)


def _text(tok: Any, ids: list[int], clean: bool) -> str:
    """Decoded ids; clean text also leaves out a character cut in half at the end (ids that stop
    between two bytes of one UTF-8 character, as generation does at max_length) instead of U+FFFD."""
    text = tok.decode(ids, skip_special_tokens=clean)
    return text.rstrip("\ufffd") if clean else text


def _messages(fname: str, value: Any) -> list[dict[str, str]]:
    """Chat messages from `(("user" "text") ...)`, a list of {"role":..,"content":..}, or a string."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise arg_error(fname, "messages", 'a list of messages like (("user" "Hello"))', value)
    out = []
    for m in value:
        if isinstance(m, list) and len(m) == 2 and all(isinstance(x, str) for x in m):
            out.append({"role": m[0], "content": m[1]})
        elif isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str):
            out.append({k: v for k, v in m.items() if isinstance(v, str)})
        else:
            raise LispEError(f"{fname}: argument 'messages': a message is (\"role\" \"text\") or "
                             f"{{\"role\":\"user\" \"content\":\"text\"}}, got {describe(m)}")
    return out


@builtin("tokenizer_chat", group=G_TOK, library=LIB, min_args=1, max_args=2, ctx=True)
def tokenizer_chat(ctx: Any, *args: Any) -> Integers:
    """(tokenizer_chat '(("user" "What is the capital of France?")))

    Token ids of a conversation rendered with the model's chat template, ending with the prompt of the
    assistant's turn. Messages: (("system" "...") ("user" "...")) or a list of {"role":.. "content":..}.
    """
    fname = "tokenizer_chat"
    tok, (messages,) = _split_tokenizer(fname, ctx, args, 1)
    msgs = _messages(fname, messages)
    with core_errors(fname):
        return Integers(tok.apply_chat_template(msgs, add_generation_prompt=True))


@builtin("tokenizer_vocab_size", group=G_TOK, library=LIB, min_args=0, max_args=1, ctx=True)
def tokenizer_vocab_size(ctx: Any, *args: Any) -> int:
    """(tokenizer_vocab_size)

    The number of token ids of the default tokenizer, or of the one given: (tokenizer_vocab_size tok).
    """
    tok, _ = _split_tokenizer("tokenizer_vocab_size", ctx, args, 0)
    return tok.vocab_size
