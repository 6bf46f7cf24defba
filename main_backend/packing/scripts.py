"""The two scripts a bundle carries: start.sh (run the unpacked backend) and health_check.py (for Docker)."""

from __future__ import annotations

import shlex

from main_backend.packing.layout import BACKEND_DIR, MODEL_DIR, VENV_DIR


def start_script(backend_folder: str, port: int, entry: str = "main.py", model_entry: str | None = None) -> str:
    """Activates the unpacked venv and runs the backend on loopback, ``$PORT`` or the packed port."""
    model = ""
    if model_entry is not None:
        model = f' --model-path "${{MODEL_PATH:-$HERE/{MODEL_DIR}/{model_entry}}}"'
    return f"""#!/bin/sh
# Starts the unpacked backend: python {entry} from its folder, in the venv that unpack created.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/{VENV_DIR}/bin/activate"
cd "$HERE/{BACKEND_DIR}/{shlex.quote(backend_folder)}"
exec python {shlex.quote(entry)} --host 127.0.0.1 --port "${{PORT:-{port}}}"{model} "$@"
"""


def health_check_script(port: int) -> str:
    """A tiny client: exit 0 when the backend on ``$PORT`` answers ``health_check`` with a live pong."""
    return f'''"""Exit 0 when the backend on $PORT answers a health_check with a live pong, else 1."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from websockets.asyncio.client import connect


async def check(port: int) -> int:
    async with connect(f"ws://127.0.0.1:{{port}}", open_timeout=3, compression=None) as ws:
        await ws.send(json.dumps({{"type": "health_check", "request_id": "docker-health"}}))
        while True:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 3))
            if reply.get("type") == "pong":
                return 0 if reply.get("status") in ("healthy", "loading", "unloading") else 1


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(check(int(os.environ.get("PORT", "{port}")))))
    except (OSError, TimeoutError, ValueError) as exc:
        print(f"unhealthy: {{exc}}", file=sys.stderr)
        sys.exit(1)
'''
