"""Incremental detokenisation: the text piece each new token adds, in bounded work per token.

Decoding the whole sequence after every token costs O(length) per step; decoding a fixed small window
does not, but tokenizers that strip a leading space (SentencePiece) or tokens that end inside a UTF-8
character make naive per-token decoding wrong. As vLLM does, we decode a short window twice — with
and without the newest tokens — and emit the difference, holding text back while it ends in an
incomplete character (U+FFFD).
"""
from __future__ import annotations

from typing import Any, Sequence

_CONTEXT = 6  # prompt tokens decoded as context so that the first piece gets its leading space right


class IncrementalDecoder:
    """Turns a stream of token ids into text pieces whose concatenation is the decoded text.

    `prompt` gives the context: the first generated token is decoded after it, so a leading space is
    kept exactly as the full decode would keep it. `skip_special_tokens` drops EOS and other special
    tokens from the text (they still count as tokens).
    """

    def __init__(self, tokenizer: Any, prompt: Sequence[int] = (), skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = [int(t) for t in prompt[-_CONTEXT:]]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.text = ""           # everything emitted so far (new text only)

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip)

    def push(self, token_id: int) -> str:
        """Add one token; return the text it completes ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        if len(new_text) > len(prefix_text) and not new_text.endswith("\ufffd"):
            piece = new_text[len(prefix_text):]
            # keep the window short: only the last tokens are needed as context
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            if self.read_offset - self.prefix_offset > _CONTEXT:
                self.prefix_offset = self.read_offset - _CONTEXT
            self._trim()
            self.text += piece
            return piece
        return ""

    def flush(self) -> str:
        """Text still held back at the end. A character the last tokens leave incomplete (generation
        stopped between two bytes of one UTF-8 character) is left out rather than shown as U+FFFD."""
        prefix_text = self._decode(self.ids[self.prefix_offset:self.read_offset])
        new_text = self._decode(self.ids[self.prefix_offset:])
        piece = new_text[len(prefix_text):] if len(new_text) > len(prefix_text) else ""
        piece = piece.rstrip("\ufffd")
        self.read_offset = len(self.ids)
        self.text += piece
        return piece

    def _trim(self) -> None:
        # drop ids before the window so memory stays bounded too
        if self.prefix_offset > 4 * _CONTEXT:
            cut = self.prefix_offset
            del self.ids[:cut]
            self.prefix_offset -= cut
            self.read_offset -= cut
