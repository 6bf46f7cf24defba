"""The fatigue backend as a real process on real photos: faces, no faces, bad input, closed eyes, the hub."""

from __future__ import annotations

import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, backend_process, free_port, hub_process
from tests.support.wsclient import open_ws, recv_until_final, send_binary, send_json

skimage_data = pytest.importorskip("skimage.data", reason="the test photos come from scikit-image")

pytestmark = pytest.mark.slow

FOLDER = REPO / "model_backends" / "fatigue_backend"
# Face-mesh eye rings (subject's right, then left): painted over to close the eyes.
EYE_RINGS = (
    (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
    (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398),
)


@pytest.fixture(scope="session")
def fatigue_python() -> Path:
    """The backend's own venv, built by the hub's CLI (instant when it is up to date)."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "fatigue"], cwd=REPO, check=True, timeout=900)
    python = FOLDER / ".venv" / "bin" / "python"
    assert python.exists()
    return python


@pytest.fixture(scope="module")
def fatigue(fatigue_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    with backend_process(FOLDER, tmp_path_factory.mktemp("fatigue"), python=fatigue_python, args=["--eager"]) as proc:
        yield proc


def encode(rgb: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=92)
    return buf.getvalue()


def b64(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    return base64.b64encode(encode(rgb, fmt)).decode()


async def infer(url: str, request_id: str, data: dict[str, Any], **fields: Any) -> dict[str, Any]:
    async with await open_ws(url) as ws:
        await send_json(ws, {"type": "inference_request", "request_id": request_id, "data": data, **fields})
        return (await recv_until_final(ws, request_id))[-1]


def close_eyes(rgb: np.ndarray, landmarks: list[list[float]]) -> np.ndarray:
    """The same photo with both eyes painted shut: skin over each eye, a dark lash line below."""
    points = np.asarray(landmarks)[:, :2]
    skin = tuple(int(c) for c in rgb[int(points[50, 1]), int(points[50, 0])])  # the cheek
    img = Image.fromarray(rgb)
    draw = ImageDraw.Draw(img)
    for ring in EYE_RINGS:
        poly = points[list(ring)]
        centre = poly.mean(axis=0)
        grown = (poly - centre) * 1.4 + centre
        draw.polygon([tuple(p) for p in grown], fill=skin)
        draw.line([tuple(p) for p in points[list(ring[:9])]], fill=(70, 50, 45), width=2)
    return np.asarray(img)


async def test_astronaut_has_a_face_with_open_eyes_and_landmarks_on_request(fatigue: RunningProcess) -> None:
    astronaut = skimage_data.astronaut()
    answer = await infer(fatigue.url, "a1", {"image": b64(astronaut), "return_landmarks": True})
    assert answer["type"] == "inference_response", answer
    d = answer["data"]
    assert d["face_found"] is True
    box = d["face_box"]
    centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert 200 < centre[0] < 250 and 100 < centre[1] < 150, box  # her face, in a 512x512 photo
    assert 60 < box["width"] < 140 and 70 < box["height"] < 150, box
    for side in ("left", "right", "mean"):
        assert 0.15 < d["ear"][side] < 0.45, d["ear"]
    assert d["eyes_closed"] is False
    assert 0.0 <= d["mar"] < 0.4
    assert all(abs(d["head_pose"][k]) < 25 for k in ("pitch", "yaw", "roll")), d["head_pose"]
    assert len(d["landmarks"]) in (468, 478) and len(d["landmarks"][0]) == 3
    assert d["image_size"] == {"width": 512, "height": 512}
    plain = await infer(fatigue.url, "a2", {"image": b64(astronaut, "PNG")})
    assert "landmarks" not in plain["data"]
    assert plain["data"]["ear"]["mean"] == pytest.approx(d["ear"]["mean"], abs=0.05)


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
async def test_photos_without_a_person_answer_face_not_found(fatigue: RunningProcess, photo: str) -> None:
    answer = await infer(fatigue.url, photo, {"image": b64(getattr(skimage_data, photo)())})
    assert answer["type"] == "inference_response", answer
    assert answer["data"]["face_found"] is False
    assert answer["data"]["ear"] is None and answer["data"]["face_box"] is None


async def test_a_broken_image_is_a_bad_request_and_the_backend_keeps_answering(fatigue: RunningProcess) -> None:
    broken = encode(skimage_data.astronaut())[:300]
    async with await open_ws(fatigue.url) as ws:
        await send_json(
            ws, {"type": "inference_request", "request_id": "bad", "data": {"image": base64.b64encode(broken).decode()}}
        )
        [error] = await recv_until_final(ws, "bad")
        await send_json(ws, {"type": "inference_request", "request_id": "notb64", "data": {"image": "not base64!"}})
        [error2] = await recv_until_final(ws, "notb64")
        await send_json(
            ws, {"type": "inference_request", "request_id": "ok", "data": {"image": b64(skimage_data.astronaut())}}
        )
        [ok] = await recv_until_final(ws, "ok")
    assert (error["type"], error["code"]) == ("error", "bad_request"), error
    assert (error2["type"], error2["code"]) == ("error", "bad_request"), error2
    assert ok["type"] == "inference_response" and ok["data"]["face_found"] is True


async def test_binary_envelope_frame_is_analysed(fatigue: RunningProcess) -> None:
    frame = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((640, 480)))
    async with await open_ws(fatigue.url) as ws:
        header = {"type": "inference_request", "request_id": "bin", "data": {"stream_id": "bin-cam", "timestamp": 5.0}}
        await send_binary(ws, header, encode(frame))
        [answer] = await recv_until_final(ws, "bin")
    assert answer["type"] == "inference_response", answer
    d = answer["data"]
    assert d["face_found"] is True and d["image_size"] == {"width": 640, "height": 480}
    assert d["stream"]["stream_id"] == "bin-cam" and d["timestamp"] == 5.0


async def test_closed_eyes_over_time_raise_perclos_and_the_level(fatigue: RunningProcess) -> None:
    astronaut = skimage_data.astronaut()
    first = await infer(fatigue.url, "lm", {"image": b64(astronaut), "return_landmarks": True}, stream_id="probe")
    open_jpeg, closed_jpeg = b64(astronaut), b64(close_eyes(astronaut, first["data"]["landmarks"]))
    answers: list[dict[str, Any]] = []
    async with await open_ws(fatigue.url) as ws:
        frames = [(i * 0.2, open_jpeg) for i in range(15)] + [(3.0 + i * 0.2, closed_jpeg) for i in range(25)]
        for i, (t, jpeg) in enumerate(frames):
            rid = f"f{i}"
            msg = {
                "type": "inference_request",
                "request_id": rid,
                "stream_id": "driver",
                "data": {"image": jpeg, "timestamp": t},
            }
            await send_json(ws, msg)
            answers.append((await recv_until_final(ws, rid))[-1]["data"])
        await send_json(
            ws,
            {
                "type": "inference_request",
                "request_id": "other",
                "stream_id": "passenger",
                "data": {"image": open_jpeg, "timestamp": 8.0},
            },
        )
        other = (await recv_until_final(ws, "other"))[-1]["data"]
    opened, closed = answers[14], answers[-1]
    assert opened["stream"]["level"] == "alert" and opened["stream"]["perclos"] == 0.0
    assert closed["ear"]["mean"] < 0.15 and closed["eyes_closed"] is True
    assert closed["stream"]["perclos"] > 0.5, closed["stream"]
    assert closed["stream"]["level"] != "alert" and closed["stream"]["fatigue_score"] >= 0.6
    assert closed["stream"]["reasons"], closed["stream"]
    assert closed["stream"]["frames"] == 40
    assert other["stream"]["perclos"] == 0.0 and other["stream"]["level"] == "alert"


async def test_the_hub_routes_frames_to_the_fatigue_backend(fatigue_python: Path, tmp_path: Path) -> None:
    config = {
        "model_backends": {
            "fatigue": {"path": str(FOLDER), "port": free_port(), "eager_load": True, "request_timeout": 20}
        }
    }
    with hub_process(config, tmp_path, wait_ready=["fatigue"], timeout=90) as hub:
        async with await open_ws(hub.ws) as ws:
            header = {
                "type": "inference_request",
                "request_id": "h1",
                "model": "fatigue",
                "stream_id": "hub-cam",
                "data": {},
            }
            await send_binary(ws, header, encode(skimage_data.astronaut()))
            answer = (await recv_until_final(ws, "h1"))[-1]  # after any `loading` progress messages
    assert answer["type"] == "inference_response", answer
    assert answer.get("model") == "fatigue"
    assert answer["data"]["face_found"] is True
    assert answer["data"]["stream"]["stream_id"] == "hub-cam"
