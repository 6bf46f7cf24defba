"""One answer's generated tokens: incremental decoding, stop sequences, limits and streamed deltas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .stop_text import StopTextFilter


class TokenSink:
    """Collects one row's tokens and turns them into text as they come.

    Only the tokens since the last cleanly decoded point are decoded per new token (the
    prefix/read offsets of text-generation-inference), so a token costs the same at the end
    of a long answer as at its start; decoding the whole answer per token made it quadratic.
    """

    def __init__(
        self,
        tokenizer: Any,
        stops: list[str],
        on_delta: Callable[[str], None] | None,
        *,
        eos_ids: set[int],
        max_tokens: int,
    ) -> None:
        self.tokenizer = tokenizer
        self.filter = StopTextFilter(stops)
        self.on_delta = on_delta
        self.eos_ids = eos_ids
        self.max_tokens = max_tokens
        self.ids: list[int] = []
        self.done = False
        self._text = ""
        self._prefix = 0
        self._read = 0

    def add(self, token: int) -> None:
        """Take the row's next token; ignored once the row is done (``generate`` pads finished rows)."""
        if self.done:
            return
        self.ids.append(token)
        if token in self.eos_ids or len(self.ids) >= self.max_tokens:
            self.done = True
        piece = self._decode_new(final=False)
        if piece:
            self._text += piece
            self._send(self.filter.feed(self._text))
        if self.filter.stopped:
            self.done = True

    def end(self) -> None:
        """Generation ended: decode what was held back (an incomplete character) and send the rest."""
        piece = self._decode_new(final=True)
        if piece and not self.filter.stopped:
            self._text += piece
            self.filter.feed(self._text)
        self._send(self.filter.flush())

    @property
    def text(self) -> str:
        return self.filter.text

    def _decode_new(self, *, final: bool) -> str:
        decode = self.tokenizer.decode
        before = decode(self.ids[self._prefix : self._read], skip_special_tokens=True)
        after = decode(self.ids[self._prefix :], skip_special_tokens=True)
        if len(after) <= len(before) or (after.endswith("\ufffd") and not final):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return after[len(before) :]

    def _send(self, delta: str) -> None:
        if delta and self.on_delta is not None:
            self.on_delta(delta)
