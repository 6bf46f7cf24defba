"""Stop sequences on streamed text: how much is safe to emit, and where the answer ends."""

from __future__ import annotations


class StopTextFilter:
    """Fed the whole generated text after each token; says what may be sent and when to stop.

    Text that could be the start of a stop sequence is held back until the next token
    shows it is not, so a streamed client never sees part of a stop sequence. The text only
    grows between calls, so each call searches only its new tail for stop sequences.
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.emitted = 0
        self.stopped = False
        self.text = ""
        self._longest = max((len(s) for s in self.stops), default=0)
        self._scanned = 0

    def feed(self, text: str) -> str:
        """Take the full text so far; return the new part that is safe to send."""
        if self.stopped:
            return ""
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            self.text = text[:cut]
        else:
            self.text = text
        safe = len(self.text) if self.stopped else len(text) - self._held_back(text)
        if text[:safe].endswith("\ufffd"):  # an incomplete UTF-8 character: wait for its bytes
            safe = len(text[:safe].rstrip("\ufffd"))
        delta = self.text[self.emitted : max(safe, self.emitted)]
        self.emitted += len(delta)
        return delta

    def flush(self) -> str:
        """The rest of the text, once generation ended."""
        delta = self.text[self.emitted :]
        self.emitted = len(self.text)
        return delta

    def _first_stop(self, text: str) -> int | None:
        start = max(0, self._scanned - self._longest + 1)
        self._scanned = len(text)
        hits = [i for i in (text.find(s, start) for s in self.stops) if i >= 0]
        return min(hits) if hits else None

    def _held_back(self, text: str) -> int:
        longest = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest
