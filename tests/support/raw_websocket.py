"""A WebSocket client on a bare socket: it handshakes, sends masked frames, and reads nothing unless asked."""

from __future__ import annotations

import base64
import os
import socket
import struct


class RawWebSocket:
    """For tests of hostile clients: one that never reads, or announces a frame and trickles it."""

    def __init__(self, port: int, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket()
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def frame_header(self, size: int) -> bytes:
        """A masked text frame's header for ``size`` payload bytes (all-zero mask: payload as is)."""
        if size < 126:
            return struct.pack("!BB", 0x81, 0x80 | size) + b"\0\0\0\0"
        if size < 65536:
            return struct.pack("!BBH", 0x81, 0x80 | 126, size) + b"\0\0\0\0"
        return struct.pack("!BBQ", 0x81, 0x80 | 127, size) + b"\0\0\0\0"

    def send_text(self, text: str) -> None:
        payload = text.encode()
        self.sock.sendall(self.frame_header(len(payload)) + payload)

    def close(self) -> None:
        self.sock.close()
