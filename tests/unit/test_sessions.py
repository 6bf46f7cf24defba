"""ClientSession without sockets: closing it never hides a cancellation of the caller."""

from __future__ import annotations

import asyncio
from typing import Any

from main_backend.sessions import ClientSession


class _SlowWebSocket:
    async def send_frame(self, frame: bytes, opcode: Any) -> None:
        await asyncio.sleep(3600)

    async def close(self, **_: Any) -> None:
        return None


async def test_close_passes_a_cancellation_of_its_caller_on() -> None:
    session = ClientSession(_SlowWebSocket(), send_queue=4, rate=10.0)  # type: ignore[arg-type]
    session.start()
    session.send(b"{}")
    await asyncio.sleep(0.01)  # the writer is inside send_frame
    closing = asyncio.create_task(session.close())
    await asyncio.sleep(0)  # close() has cancelled the writer and waits for it
    closing.cancel()
    await asyncio.gather(closing, return_exceptions=True)
    assert closing.cancelled()
