"""Stream a camera (or a video file) to the hub and print what the fatigue and emotion backends see.

Each frame travels as one binary envelope (4-byte header length, JSON header, raw JPEG bytes),
so nothing is base64-encoded, and is fanned out to several backends at once with
``"models": ["fatigue", "emotion"]``. Every frame carries the same ``stream_id``: when a backend
is slower than the camera, the hub keeps only the newest waiting frame of the stream and answers
the older ones with ``code: "superseded"`` (counted here, not printed), so the answers stay live.

Run it from the repository root with the hub's venv (it has ``websockets`` and the protocol):

    .venv/bin/python examples/camera_client.py                    # skimage's astronaut, moving a little
    .venv/bin/python examples/camera_client.py --source 0 --show  # webcam 0, answers drawn on the video
    .venv/bin/python examples/camera_client.py --source drive.mp4 --fps 15 --frames 300

``--source 0`` (a webcam) and video files need OpenCV (``pip install opencv-python``); ``--show``
needs an OpenCV build with a GUI. Without a camera the frames are scikit-image's astronaut photo,
shifted by a few pixels from frame to frame. Set ``HUB_API_KEY`` (or ``--api-key``) when the hub
asks for one. Press Ctrl-C (or ``q`` in the ``--show`` window) to stop.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from model_backends.base.protocol import join_envelope

try:  # OpenCV is optional: webcams, video files, fast JPEG encoding and --show
    import cv2
except ImportError:
    cv2 = None


# ---------------------------------------------------------------------------- frames
def astronaut_frames(width: int) -> Iterator[np.ndarray]:
    """scikit-image's astronaut (RGB), moved by a few pixels each frame as a head would."""
    from skimage import data, transform

    photo = data.astronaut()
    if width and photo.shape[1] != width:
        scale = width / photo.shape[1]
        photo = (transform.rescale(photo, scale, channel_axis=2, anti_aliasing=True) * 255).astype(np.uint8)
    for n in _count():
        dx, dy = round(6 * math.sin(n / 7)), round(4 * math.sin(n / 11))
        yield np.roll(photo, (dy, dx), axis=(0, 1))


def opencv_frames(source: str, width: int) -> Iterator[np.ndarray]:
    """Frames (RGB) from a webcam index or a video file, resized to ``width``."""
    if cv2 is None:
        raise SystemExit("error: reading a camera or a video needs OpenCV: pip install opencv-python")
    capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if not capture.isOpened():
        raise SystemExit(f"error: cannot open the camera or video {source!r}")
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            if width and bgr.shape[1] > width:
                bgr = cv2.resize(bgr, (width, round(bgr.shape[0] * width / bgr.shape[1])))
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    if cv2 is not None:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            return bytes(buf)
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _count() -> Iterator[int]:
    n = 0
    while True:
        yield n
        n += 1


# ---------------------------------------------------------------------------- answers
@dataclass
class Latest:
    """What the backends said last, for printing and for the --show overlay."""

    answers: dict[str, dict[str, Any]] = field(default_factory=dict)
    superseded: int = 0
    errors: int = 0
    received: int = 0
    sent_at: dict[str, float] = field(default_factory=dict)
    all_answered: asyncio.Event = field(default_factory=asyncio.Event)
    #: The hub's message when it refused our API key: streaming stops.
    refused: str | None = None

    def summary(self, model: str) -> str:
        data = self.answers.get(model)
        if data is None:
            return f"{model}: -"
        if model == "fatigue":
            stream = data.get("stream") or {}
            if not data.get("face_found"):
                return "fatigue: no face"
            ear = (data.get("ear") or {}).get("mean")
            return (
                f"fatigue: score {stream.get('fatigue_score', 0):.2f} ({stream.get('level', '?')}), "
                f"EAR {ear:.3f}, PERCLOS {stream.get('perclos', 0):.2f}"
            )
        if model == "emotion":
            faces = data.get("faces") or []
            if not faces:
                return "emotion: no face"
            return f"emotion: {faces[0]['top_emotion']} ({faces[0]['score']:.2f})"
        small = {k: v for k, v in data.items() if isinstance(v, str | int | float | bool)}
        return f"{model}: {json.dumps(small)[:100]}"


async def receive(ws: ClientConnection, latest: Latest, models: list[str], quiet: bool) -> None:
    """Print one line per frame once every model has answered it (or failed)."""
    pending: dict[str, set[str]] = {}
    async for frame in ws:
        msg = json.loads(frame)
        rid, model = msg.get("request_id"), msg.get("model", "?")
        if msg["type"] == "loading":
            if not quiet:
                print(f"[{model}] loading its model ...")
            continue
        if msg["type"] == "error" and msg.get("code") == "unauthorized":
            latest.refused = str(msg.get("error"))
            latest.all_answered.set()
            return
        if msg["type"] == "error":
            if msg.get("code") == "superseded":
                latest.superseded += 1
            else:
                latest.errors += 1
                print(f"[{rid}] {model}: error {msg.get('code')}: {msg.get('error')}")
        elif msg["type"] == "inference_response" and msg.get("done", True):
            latest.answers[model] = msg["data"]
            latest.received += 1
        waiting = pending.setdefault(rid, set(models))
        waiting.discard(model)
        if not waiting:
            del pending[rid]
            took = (time.perf_counter() - latest.sent_at.pop(rid, time.perf_counter())) * 1000
            if not latest.sent_at:
                latest.all_answered.set()
            if not quiet and msg["type"] != "error":
                print(f"[{rid}] {took:6.1f} ms  " + "  |  ".join(latest.summary(m) for m in models))


# ---------------------------------------------------------------------------- sending
async def stream(args: argparse.Namespace) -> Latest:
    frames = astronaut_frames(args.width) if args.source == "astronaut" else opencv_frames(args.source, args.width)
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else None
    latest = Latest()
    async with connect(args.url, max_size=None, additional_headers=headers, open_timeout=10) as ws:
        reader = asyncio.create_task(receive(ws, latest, args.models, args.quiet))
        period = 1.0 / args.fps
        started = time.perf_counter()
        for n, rgb in enumerate(frames):
            if (args.frames and n >= args.frames) or latest.refused:
                break
            rid = f"{args.stream_id}-{n}"
            header = {
                "type": "inference_request",
                "request_id": rid,
                "models": args.models,
                "stream_id": args.stream_id,
                "priority": 1,  # interactive: ahead of batch work
                "data": {"timestamp": time.time()},  # the image is the binary payload (data.image)
            }
            latest.sent_at[rid] = time.perf_counter()
            latest.all_answered.clear()
            try:
                await ws.send(join_envelope(header, encode_jpeg(rgb, args.quality)))
            except ConnectionClosed:
                if latest.refused:
                    break
                raise
            if args.show and show(rgb, latest, args.models):
                break
            await asyncio.sleep(max(0.0, started + (n + 1) * period - time.perf_counter()))
        if not latest.refused:
            await _drain(latest, args.timeout)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return latest


async def _drain(latest: Latest, timeout: float) -> None:
    """Give the last frames' answers up to ``timeout`` seconds to arrive."""
    if not latest.sent_at:
        return
    try:
        await asyncio.wait_for(latest.all_answered.wait(), timeout)
    except TimeoutError:
        print(f"{len(latest.sent_at)} frames got no complete answer within {timeout:g}s")


def show(rgb: np.ndarray, latest: Latest, models: list[str]) -> bool:
    """Draw the latest answers on the frame; True when the user pressed q."""
    if cv2 is None:
        raise SystemExit("error: --show needs OpenCV: pip install opencv-python")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for i, model in enumerate(models):
        cv2.putText(bgr, latest.summary(model), (10, 28 + 26 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 220, 40), 2)
    box = (latest.answers.get("fatigue") or {}).get("face_box")
    if box:
        x, y, w, h = (int(box.get(k, 0)) for k in ("x", "y", "width", "height"))
        cv2.rectangle(bgr, (x, y), (x + w, y + h), (40, 220, 40), 2)
    cv2.imshow("hub camera client", bgr)
    return cv2.waitKey(1) & 0xFF == ord("q")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8765/ws", help="the hub's client endpoint")
    parser.add_argument("--source", default="astronaut", help="a webcam index, a video file, or 'astronaut'")
    parser.add_argument("--models", nargs="+", default=["fatigue", "emotion"], help="backends to fan out to")
    parser.add_argument("--stream-id", default="cam0", help="names this camera's stream (per-stream state)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--frames", type=int, default=0, help="stop after this many frames (0: run until the end)")
    parser.add_argument("--width", type=int, default=512, help="resize frames to this width before sending")
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the last answers")
    parser.add_argument("--api-key", default=os.environ.get("HUB_API_KEY"), help="default: $HUB_API_KEY")
    parser.add_argument("--show", action="store_true", help="draw the answers on the video (needs OpenCV)")
    parser.add_argument("--quiet", action="store_true", help="print only the totals at the end")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        latest = asyncio.run(stream(args))
    except KeyboardInterrupt:
        return 130
    except InvalidStatus as exc:  # the hub answered the handshake with an HTTP error
        status = exc.response.status_code
        if status in (401, 403):
            how = "the key given is not one it accepts" if args.api_key else "set HUB_API_KEY or --api-key"
            print(f"error: the hub at {args.url} refused the API key ({how})", file=sys.stderr)
            return 4
        print(f"error: the hub at {args.url} refused the connection: HTTP {status}", file=sys.stderr)
        return 1
    except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as exc:
        print(f"error: cannot talk to the hub at {args.url}: {exc}", file=sys.stderr)
        return 3
    if latest.refused:
        how = "the key given is not one it accepts" if args.api_key else "set HUB_API_KEY or --api-key"
        print(f"error: the hub at {args.url} refused the API key ({how}): {latest.refused}", file=sys.stderr)
        return 4
    print(
        f"done: {latest.received} answers, {latest.superseded} frames superseded by newer ones, {latest.errors} errors"
    )
    return 0 if latest.received and not latest.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
