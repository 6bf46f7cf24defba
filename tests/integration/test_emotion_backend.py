"""The emotion backend as a real process in its own venv, driven over WebSocket with real photos."""

from __future__ import annotations

import asyncio
import base64
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, backend_process, free_port, hub_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, request, send_binary, send_json

skimage_data = pytest.importorskip("skimage.data", reason="the test photos come from scikit-image")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image")

pytestmark = pytest.mark.slow

EMOTION_DIR = REPO / "model_backends" / "emotion_backend"
EMOTIONS = {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
# Where the astronaut's face is in skimage.data.astronaut() (x, y of its centre), in pixels.
ASTRONAUT_FACE_CENTRE = (225, 110)


def encode(pixels: Any, fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, quality=90)
    return out.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def inference(request_id: str, image: str | None = None, **data: Any) -> dict[str, Any]:
    if image is not None:
        data["image"] = image
    return {"type": "inference_request", "request_id": request_id, "data": data}


@pytest.fixture(scope="module")
def emotion_venv() -> Path:
    """Build (or confirm, instantly when up to date) the backend's venv the way users do."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "emotion"], cwd=REPO, check=True, timeout=600)
    return EMOTION_DIR / ".venv"


@pytest.fixture(scope="module")
def backend(emotion_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    with backend_process(EMOTION_DIR, tmp_path_factory.mktemp("emotion-logs"), args=["--eager"]) as proc:
        yield proc


@pytest.fixture(scope="module")
def astronaut_jpeg() -> bytes:
    return encode(skimage_data.astronaut())


async def test_astronaut_is_happy(backend: RunningProcess, astronaut_jpeg: bytes) -> None:
    answer = await request(backend.url, inference("a1", b64(astronaut_jpeg)))

    assert answer["type"] == "inference_response", answer
    data = answer["data"]
    assert data["face_found"] is True
    assert data["top_emotion"] == "happy"
    [face] = data["faces"]
    assert face["top_emotion"] == "happy"
    assert face["score"] > 0.99
    assert set(face["emotions"]) == EMOTIONS
    assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=1e-3)
    x, y, w, h = face["box"]
    assert x < ASTRONAUT_FACE_CENTRE[0] < x + w
    assert y < ASTRONAUT_FACE_CENTRE[1] < y + h


@pytest.mark.parametrize("photo", ["chelsea", "coffee"])
async def test_photos_without_a_person_have_no_faces(backend: RunningProcess, photo: str) -> None:
    jpeg = encode(getattr(skimage_data, photo)())

    answer = await request(backend.url, inference(photo, b64(jpeg)))

    assert answer["type"] == "inference_response", answer
    assert answer["data"] == {"faces": [], "top_emotion": None, "face_found": False}


async def test_faces_are_sorted_largest_first(backend: RunningProcess) -> None:
    big = skimage_data.astronaut()
    small = np.asarray(Image.fromarray(big).resize((384, 384), Image.Resampling.LANCZOS))
    canvas = np.full((512, 384 + 512, 3), 128, dtype=np.uint8)
    canvas[:384, :384] = small  # the smaller face comes first from left to right
    canvas[:, 384:] = big

    answer = await request(backend.url, inference("two", b64(encode(canvas, "PNG"))))

    faces = answer["data"]["faces"]
    assert len(faces) == 2, faces
    areas = [f["box"][2] * f["box"][3] for f in faces]
    assert areas[0] > areas[1]
    assert faces[0]["box"][0] > 384  # the big astronaut on the right
    assert [f["top_emotion"] for f in faces] == ["happy", "happy"]
    assert answer["data"]["top_emotion"] == "happy"


async def test_face_at_the_frame_edge_is_padded_and_read(backend: RunningProcess) -> None:
    # Cut just below the chin: the crop's margin leaves the frame and is filled, as fer does.
    jpeg = encode(np.ascontiguousarray(skimage_data.astronaut()[:170]))

    answer = await request(backend.url, inference("edge", b64(jpeg)))

    [face] = answer["data"]["faces"]
    _, y, _, h = face["box"]
    assert y + h + 10 > 170
    assert face["top_emotion"] == "happy"


@pytest.mark.parametrize(
    "image",
    [b64(b"\xff\xd8\xff\xe0 this is not really a JPEG"), "%%% not base64 %%%", ""],
    ids=["undecodable", "not-base64", "empty"],
)
async def test_broken_image_is_a_bad_request_and_the_backend_keeps_serving(
    backend: RunningProcess, astronaut_jpeg: bytes, image: str
) -> None:
    async with await open_ws(backend.url) as ws:
        await send_json(ws, inference("broken", image))
        [error] = await recv_until_final(ws, "broken")
        await send_json(ws, inference("after", b64(astronaut_jpeg)))
        [after] = await recv_until_final(ws, "after")

    assert error["type"] == "error"
    assert error["code"] == "bad_request", error
    assert after["type"] == "inference_response"
    assert after["data"]["top_emotion"] == "happy"
    assert backend.proc.poll() is None


async def test_missing_image_is_a_bad_request(backend: RunningProcess) -> None:
    answer = await request(backend.url, inference("none"))

    assert answer["type"] == "error"
    assert answer["code"] == "bad_request"


async def test_binary_envelope_carries_a_raw_png(backend: RunningProcess) -> None:
    png = encode(skimage_data.astronaut(), "PNG")

    async with await open_ws(backend.url) as ws:
        await send_binary(ws, {"type": "inference_request", "request_id": "bin", "data": {}}, png)
        [answer] = await recv_until_final(ws, "bin")

    assert answer["type"] == "inference_response", answer
    assert answer["data"]["top_emotion"] == "happy"
    assert answer["data"]["faces"][0]["score"] > 0.99


async def test_pong_reports_the_loaded_model(backend: RunningProcess) -> None:
    async with await open_ws(backend.url) as ws:
        await send_json(ws, {"type": "health_check", "request_id": "h"})
        pong = await recv_json(ws)

    assert pong["type"] == "pong"
    assert pong["backend"] == "emotion"
    assert pong["model_loaded"] is True


def test_emotion_through_the_hub(emotion_venv: Path, tmp_path: Path, astronaut_jpeg: bytes) -> None:
    config = {
        "model_backends": {
            "emotion": {"path": str(EMOTION_DIR), "port": free_port(), "request_timeout": 30, "memory_mb": 150}
        }
    }
    with hub_process(config, tmp_path, wait_ready=["emotion"]) as hub:
        message = {**inference("via-hub", b64(astronaut_jpeg)), "model": "emotion"}
        answer = asyncio.run(request(hub.ws, message))

    assert answer["type"] == "inference_response", answer
    assert answer["data"]["top_emotion"] == "happy"
