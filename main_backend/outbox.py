"""Outbox: the frames waiting for one backend connection's writer.

Two lanes: control frames (health checks, load/unload, cancel) always go before data, so a
health check never waits behind a queue of camera frames; data is bounded in bytes, so a slow
or frozen backend makes its own requests ``overloaded`` instead of growing the hub's memory.
Putting never waits: whoever hands a frame to a backend (a client's read loop) is never held
up by that backend's socket. Frames wait here only while that socket is full; the connection
takes them out (``pop``) when it can write again.
"""

from __future__ import annotations

from collections import deque

from model_backends.base.errors import OverloadedError


class Outbox:
    """Two FIFO lanes, emptied by the connection when its socket takes frames again."""

    def __init__(self, max_data_bytes: int, name: str = "") -> None:
        self.max_data_bytes = max_data_bytes
        self.name = name
        self._control: deque[bytes] = deque()
        self._data: deque[bytes] = deque()
        self.data_bytes = 0

    def __len__(self) -> int:
        return len(self._control) + len(self._data)

    def put_control(self, frame: bytes) -> None:
        self._control.append(frame)

    def put_data(self, frame: bytes) -> None:
        """Queue a data frame, or raise ``OverloadedError`` when the lane's bytes are spent.

        A frame larger than the whole budget still goes when the lane is empty.
        """
        if self._data and self.data_bytes + len(frame) > self.max_data_bytes:
            raise OverloadedError(
                f"backend {self.name!r} is not taking frames fast enough ({self.data_bytes} bytes waiting to be sent)",
                retry_after=0.5,
            )
        self._data.append(frame)
        self.data_bytes += len(frame)

    def pop(self) -> bytes | None:
        """The next frame to write (control first), or None."""
        if self._control:
            return self._control.popleft()
        if self._data:
            frame = self._data.popleft()
            self.data_bytes -= len(frame)
            return frame
        return None

    def clear(self) -> None:
        self._control.clear()
        self._data.clear()
        self.data_bytes = 0
