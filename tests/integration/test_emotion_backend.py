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


def encode(pixels: Any, fmt: str = "JPEG", quality: int = 85) -> bytes:
    """JPEG at quality 85 by default: what a camera client sends."""
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, quality=quality)
    return out.getvalue()


def astronaut_face(side: int) -> Any:
    """The astronaut's head and shoulders, scaled so that the face (105 px in the photo) is ``side`` px."""
    crop = skimage_data.astronaut()[40:200, 150:300]
    scale = side / 105
    size = (round(crop.shape[1] * scale), round(crop.shape[0] * scale))
    return np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))


def pasted(face: Any, width: int, height: int, x: int, y: int) -> Any:
    frame = np.full((height, width, 3), 110, dtype=np.uint8)
    frame[y : y + face.shape[0], x : x + face.shape[1]] = face
    return frame


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


async def test_astronaut_at_jpeg_q85_is_one_happy_face(backend: RunningProcess, astronaut_jpeg: bytes) -> None:
    answer = await request(backend.url, inference("a1", b64(astronaut_jpeg)))

    assert answer["type"] == "inference_response", answer
    data = answer["data"]
    assert data["face_found"] is True
    assert data["top_emotion"] == "happy"
    [face] = data["faces"]  # the Haar cascade listed a false box first here
    assert face["top_emotion"] == "happy"
    assert face["score"] > 0.99
    assert face["face_score"] > 0.8
    assert set(face["emotions"]) == EMOTIONS
    assert sum(face["emotions"].values()) == pytest.approx(1.0, abs=1e-3)
    x, y, w, h = face["box"]
    assert x < ASTRONAUT_FACE_CENTRE[0] < x + w
    assert y < ASTRONAUT_FACE_CENTRE[1] < y + h


@pytest.mark.parametrize("photo", ["cat", "chelsea", "coffee", "rocket"])
async def test_photos_without_a_person_have_no_faces(backend: RunningProcess, photo: str) -> None:
    jpeg = encode(getattr(skimage_data, photo)())

    answer = await request(backend.url, inference(photo, b64(jpeg)))

    assert answer["type"] == "inference_response", answer
    assert answer["data"] == {"faces": [], "top_emotion": None, "face_found": False}


async def test_faces_are_ordered_by_detector_score(backend: RunningProcess) -> None:
    big = skimage_data.astronaut()
    small = np.asarray(Image.fromarray(big).resize((256, 256), Image.Resampling.LANCZOS))
    canvas = np.full((512, 384 + 512, 3), 128, dtype=np.uint8)
    canvas[100:356, 64:320] = small  # a 52-px face, left of the big one
    canvas[:, 384:] = big

    answer = await request(backend.url, inference("two", b64(encode(canvas, "PNG"))))

    faces = answer["data"]["faces"]
    assert len(faces) == 2, faces
    scores = [f["face_score"] for f in faces]
    assert scores == sorted(scores, reverse=True)
    assert faces[0]["box"][0] > 384  # the big astronaut, scored higher, comes first
    assert [f["top_emotion"] for f in faces] == ["happy", "happy"]
    assert answer["data"]["top_emotion"] == "happy"


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080)])
@pytest.mark.parametrize("side", [48, 160])
async def test_face_in_a_large_frame_is_found(backend: RunningProcess, width: int, height: int, side: int) -> None:
    x, y = width // 3 + 7, height // 2 - side // 2
    jpeg = encode(pasted(astronaut_face(side), width, height, x, y))

    answer = await request(backend.url, inference(f"big-{side}", b64(jpeg)))

    [face] = answer["data"]["faces"]
    fx, fy, fw, fh = face["box"]
    assert fx <= x + side * 0.7 <= fx + fw and fy <= y + side * 0.9 <= fy + fh, (face["box"], x, y)
    assert 0.6 * side <= fw <= 1.4 * side
    assert face["top_emotion"] == "happy"


async def test_small_faces_in_1080p_need_the_tiles(backend: RunningProcess) -> None:
    jpeg = encode(pasted(astronaut_face(48), 1920, 1080, 700, 500))

    whole_frame_only = await request(backend.url, inference("untiled", b64(jpeg), min_face_px=0))

    assert whole_frame_only["data"]["faces"] == []


async def test_face_box_hint_skips_detection(backend: RunningProcess, astronaut_jpeg: bytes) -> None:
    # The box as the fatigue backend reports it.
    hint = {"x": 179.2, "y": 70.6, "width": 91.9, "height": 107.3}

    answer = await request(backend.url, inference("hint", b64(astronaut_jpeg), face_box=hint))

    [face] = answer["data"]["faces"]
    assert face["box"] == [179, 71, 92, 107]
    assert face["face_score"] is None  # not detected: the caller's box
    assert face["top_emotion"] == "happy"


async def test_face_box_hint_is_taken_as_given_even_without_a_face(backend: RunningProcess) -> None:
    jpeg = encode(skimage_data.coffee())

    answer = await request(backend.url, inference("hint-coffee", b64(jpeg), face_box=[10, 10, 100, 100]))

    [face] = answer["data"]["faces"]
    assert face["box"] == [10, 10, 100, 100]
    assert face["face_score"] is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("face_box", [1, 2, 3]),
        ("face_box", {"x": 1}),
        ("face_box", [0, 0, 0, 10]),
        ("face_box", [5000, 10, 50, 50]),
        ("min_face_px", -1),
    ],
)
async def test_bad_options_are_refused_naming_the_field(
    backend: RunningProcess, astronaut_jpeg: bytes, field: str, value: Any
) -> None:
    answer = await request(backend.url, inference("bad", b64(astronaut_jpeg), **{field: value}))

    assert answer["type"] == "error"
    assert answer["code"] == "bad_request"
    assert field in answer["error"]


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
