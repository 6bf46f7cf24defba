"""A small backend for testing the hub's mechanics: echo, sleep, fail, stream, crash."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from model_backends.base import BadRequestError, BaseModelBackend, current_request, run_backend
from model_backends.base.images import image_bytes_from


class EchoBackend(BaseModelBackend):
    """Echoes its input; data.sleep makes it slow, data.fail makes it fail, data.stream_n streams."""

    name = "echo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_batch_size = int(os.environ.get("ECHO_MAX_BATCH", "1"))
        self.loads = 0
        self.payload: bytearray | None = None

    def initialize_model(self) -> None:
        time.sleep(float(os.environ.get("ECHO_LOAD_SECONDS", "0")))
        self.payload = bytearray(int(os.environ.get("ECHO_MODEL_MB", "0")) * 1024 * 1024)
        self.loads += 1

    def process_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any] | BaseException]:
        """One sleep for the whole batch (as a real batched model call), each answer says its batch size."""
        time.sleep(max((float(d.get("sleep", 0)) for d in items), default=0.0))
        return [
            {"echo": {k: v for k, v in d.items() if k != "sleep"}, "batch": len(items), "loads": self.loads}
            for d in items
        ]

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        if "sleep" in data:
            time.sleep(float(data["sleep"]))
        if data.get("reply") == "small":  # benchmarks: a fixed small answer, no echo
            return {"ok": True}
        if data.get("fail") == "bad_request":
            raise BadRequestError("asked to fail")
        if data.get("fail") == "crash":
            os._exit(3)
        if data.get("fail") == "exception":
            raise RuntimeError("boom")
        if "image" in data:
            data = {**data, "image": {"bytes": len(image_bytes_from(data))}}
        ctx = current_request()
        for i in range(int(data.get("stream_n", 0))):
            if ctx is not None:
                ctx.emit_partial({"token": i})
        out: dict[str, Any] = {
            "echo": {k: v for k, v in data.items() if not isinstance(v, bytes)},
            "loads": self.loads,
            "python": sys.prefix,
            "pid": os.getpid(),
        }
        for key, value in data.items():
            if isinstance(value, bytes):
                out["echo"][key] = {"bytes": len(value)}
        return out

    def cleanup(self) -> None:
        self.payload = None


if __name__ == "__main__":
    # Crash-loop tests: exit at start while the file named by ECHO_CRASH_AT_START exists.
    crash_flag = os.environ.get("ECHO_CRASH_AT_START")
    if crash_flag and os.path.exists(crash_flag):
        sys.exit(f"echo: {crash_flag} exists; crashing at start as asked")
    run_backend(EchoBackend)
