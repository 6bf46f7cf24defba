"""ClientSession without sockets: frames go out at once while the socket takes them, wait (bounded)
while it is full, and a client past either bound is closed with 1008."""

from __future__ import annotations

from collections.abc import Callable

from main_backend.sessions import ClientSession


class _FakeSocket:
    """What ClientSession uses of a ClientSocket: write, writable, on_writable, close, abort."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.writable = True
        self.on_writable: Callable[[], None] | None = None
        self.closed_with: tuple[int, str] | None = None
        self.aborted = False

    def write(self, frame: bytes) -> None:
        self.written.append(frame)

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    def resume(self) -> None:
        self.writable = True
        assert self.on_writable is not None
        self.on_writable()


def _session(socket: _FakeSocket, *, frames: int = 4, queued_bytes: int | None = None) -> ClientSession:
    return ClientSession(socket, send_queue=frames, rate=10.0, max_queued_bytes=queued_bytes)  # type: ignore[arg-type]


async def test_frames_are_written_at_once_while_the_socket_takes_them() -> None:
    socket = _FakeSocket()
    session = _session(socket)
    assert session.send(b"1") and session.send(b"2")
    assert socket.written == [b"1", b"2"] and session.queued_bytes == 0


async def test_frames_wait_while_the_socket_is_full_and_go_in_order_when_it_resumes() -> None:
    socket = _FakeSocket()
    session = _session(socket)
    socket.writable = False
    assert session.send(b"aa") and session.send(b"bbb")
    assert socket.written == [] and session.queued_bytes == 5
    socket.resume()
    assert session.send(b"c")
    assert socket.written == [b"aa", b"bbb", b"c"] and session.queued_bytes == 0


async def test_a_client_past_the_frame_bound_is_closed_with_1008_and_aborted_later() -> None:
    socket = _FakeSocket()
    session = _session(socket, frames=2)
    socket.writable = False
    assert session.send(b"1") and session.send(b"2")
    assert not session.send(b"3")
    assert session.closed and session.queued_bytes == 0 and session.dropped_frames == 1
    assert socket.closed_with is not None and socket.closed_with[0] == 1008
    assert "2 frames waiting" in socket.closed_with[1]
    assert not session.send(b"4")  # nothing more for a closed session
    socket.resume()
    assert socket.written == []  # what waited was dropped, not sent
    assert ClientSession.ABORT_AFTER_S > 0 and session._abort is not None  # the abort is scheduled


async def test_a_client_past_the_byte_bound_is_closed_with_1008() -> None:
    socket = _FakeSocket()
    session = _session(socket, frames=100, queued_bytes=10)
    socket.writable = False
    assert session.send(b"x" * 8)
    assert not session.send(b"y" * 8)
    assert socket.closed_with is not None and socket.closed_with[0] == 1008
    assert "16 bytes waiting (limit 10)" in socket.closed_with[1]
