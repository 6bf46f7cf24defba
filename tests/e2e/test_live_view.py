"""The dashboard's live view in headless Chromium, against a hub with the real fatigue, emotion and EEG backends.

A camera stream made from a real photo (scikit-image's astronaut) goes through the hub; the page
must draw each backend's findings on the frame, move the fatigue gauge when the eyes in the frames
close, chart EEG band powers, stream a chat answer, and fit a 390 px phone without a horizontal
scroll or clipped text. With ``HUB_UPDATE_SCREENSHOTS=1`` it also rewrites the README's pictures in
docs/screenshots (1400 px and 390 px wide).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from model_backends.base.protocol import join_envelope
from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, playwright_sync
from tests.integration.test_fatigue_backend import close_eyes, encode
from tests.support.processes import REPO, RunningProcess, echo_backend_config, free_port, get_json, hub_process

skimage_data = pytest.importorskip("skimage.data", reason="the camera stream is made from scikit-image's astronaut")

BACKENDS = REPO / "model_backends"
CHAT_BACKEND = REPO / "tests" / "backends" / "chat_backend"
SCREENSHOTS = REPO / "docs" / "screenshots"
STREAM = "cabin-cam"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/install_browser.sh"),
    pytest.mark.skipif(
        not all((BACKENDS / f"{b}_backend" / ".venv/bin/python").exists() for b in ("fatigue", "emotion", "eeg")),
        reason="the fatigue, emotion and eeg venvs are not built: run make setup",
    ),
]


def real_backend(name: str, **extra: Any) -> dict[str, Any]:
    return {"path": str(BACKENDS / f"{name}_backend"), "port": free_port(), "request_timeout": 30, **extra}


@pytest.fixture(scope="module")
def live_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    config = {
        "model_backends": {
            "fatigue": real_backend("fatigue", eager_load=True),
            "emotion": real_backend("emotion", eager_load=True),
            "eeg": real_backend("eeg"),
            "chat": echo_backend_config(path=str(CHAT_BACKEND), chat=True, env={"CHAT_WORD_DELAY": "0.12"}),
            "chat2": echo_backend_config(path=str(CHAT_BACKEND), chat=True, env={"CHAT_LOAD_SECONDS": "4"}),
        },
        "capabilities": {"text": "chat", "vision": "chat"},
    }
    names = list(config["model_backends"])
    with hub_process(config, tmp_path_factory.mktemp("live"), wait_ready=names, timeout=120) as hub:
        yield hub


class Camera:
    """A camera in a thread: the astronaut (eyes open, or painted shut) to fatigue + emotion, and EEG chunks."""

    def __init__(self, hub: RunningProcess) -> None:
        self._hub = hub
        photo = skimage_data.astronaut()
        self.open_jpeg = encode(photo)
        landmarks = self._ask("fatigue", self.open_jpeg, {"return_landmarks": True})["landmarks"]
        self.closed_jpeg = encode(close_eyes(photo, landmarks))
        self.eyes_closed = False
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _ask(self, model: str, jpeg: bytes, data: dict[str, Any]) -> dict[str, Any]:
        with connect(self._hub.ws, open_timeout=10, max_size=None) as ws:
            header = {"type": "inference_request", "request_id": "probe", "model": model, "data": data}
            ws.send(join_envelope(header, jpeg))
            while True:
                answer = json.loads(ws.recv(timeout=60))
                if answer["type"] != "loading":
                    assert answer["type"] == "inference_response", answer
                    return dict(answer["data"])

    def __enter__(self) -> Camera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def _run(self) -> None:
        rng = np.random.default_rng(7)
        t = np.arange(4 * 256) / 256
        with connect(self._hub.ws, open_timeout=10, max_size=None) as ws:
            n = 0
            while not self._stop.is_set():
                n += 1
                header = {
                    "type": "inference_request",
                    "request_id": f"f{n}",
                    "models": ["fatigue", "emotion"],
                    "stream_id": STREAM,
                    "priority": 1,
                    "data": {"timestamp": n * 0.25, "return_landmarks": True},
                }
                ws.send(join_envelope(header, self.closed_jpeg if self.eyes_closed else self.open_jpeg))
                alpha = 20 + 15 * np.sin(n / 5)  # the alpha rhythm waxes and wanes, so the chart moves
                eeg = [
                    (alpha * np.sin(2 * np.pi * 10 * t) + 12 * np.sin(2 * np.pi * 6 * t) + rng.normal(0, 4, t.size))
                    .round(2)
                    .tolist()
                    for _ in range(2)
                ]
                eeg_request = {
                    "type": "inference_request",
                    "request_id": f"e{n}",
                    "model": "eeg",
                    "data": {"eeg": eeg, "sfreq": 256, "ch_names": ["Fz", "C4"], "stream_id": STREAM},
                }
                ws.send(json.dumps(eeg_request))
                waiting = {(f"f{n}", "fatigue"), (f"f{n}", "emotion"), (f"e{n}", "eeg")}
                while waiting:
                    answer = json.loads(ws.recv(timeout=60))
                    if answer["type"] != "loading":
                        waiting.discard((answer.get("request_id"), answer.get("model")))
                self.frames += 1


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser: Any, width: int, height: int = 900) -> Any:
    page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    page.set_default_timeout(30_000)
    page.on("pageerror", lambda error: print(f"page error: {error}"))  # shown when the test fails
    page.on("console", lambda message: print(f"console {message.type}: {message.text}"))
    return page


def gauge_score(page: Any) -> float:
    return float(page.get_attribute("#gauge", "data-score") or "nan")


def test_live_view_draws_findings_follows_closed_eyes_and_chat_streams(
    live_hub: RunningProcess, browser: Any, tmp_path: Path
) -> None:
    page = new_page(browser, 1400, 1000)
    with Camera(live_hub) as camera:
        page.goto(f"{live_hub.http}/")
        page.wait_for_function(f"() => document.getElementById('stream-select').value === '{STREAM}'")
        # fatigue's face box and emotion's face box, drawn over the frame
        page.wait_for_function("() => Number(document.getElementById('live-canvas').dataset.boxes) >= 2")
        page.wait_for_function("() => document.getElementById('ro-eyes').textContent === 'open'")
        assert page.text_content("#ro-emotion").startswith("happy"), page.text_content("#ro-emotion")
        open_score = gauge_score(page)
        assert open_score < 0.3, open_score
        page.wait_for_function("() => Number(document.getElementById('chart-eeg').dataset.points) >= 10")

        # chat: text + an image, streamed word by word through /v1/chat/completions
        page.wait_for_function(
            "() => [...document.querySelectorAll('#chat-model option')].some(o => o.value == 'chat')"
        )
        page.select_option("#chat-model", "chat")
        photo = tmp_path / "astronaut.jpg"
        photo.write_bytes(camera.open_jpeg)
        page.set_input_files("#chat-image", str(photo))
        page.wait_for_function("() => document.getElementById('chat-image-name').textContent === 'astronaut.jpg'")
        question = "what do you see in this picture of the cabin camera"
        page.fill("#chat-input", question)
        page.click("#chat-send")
        # part of the answer shows while the rest is still streaming, then all of it
        page.wait_for_function(
            "() => { const m = document.querySelector('.msg.assistant'); "
            "return m && m.dataset.state === 'waiting' && m.textContent.length > 8; }"
        )
        page.wait_for_selector(".msg.assistant[data-state='done']")
        answer = page.text_content(".msg.assistant .text") or ""
        assert answer.startswith("<image:image/jpeg") and answer.endswith(question), answer  # the image reached it
        assert page.get_attribute(".msg.user img", "alt") == "attached image"

        # a model that loads on first use: the page says so while the answer waits
        page.select_option("#chat-model", "chat2")
        page.fill("#chat-input", "hello again")
        page.click("#chat-send")
        page.wait_for_function(
            "() => document.getElementById('chat-status').textContent.includes('is loading its model')"
        )
        page.wait_for_function("() => document.querySelectorAll(\".msg.assistant[data-state='done']\").length === 2")

        # the capability bindings: `text` moved to chat2 from the page
        page.click("#caps summary")
        page.select_option('.cap[data-capability="text"] select', "chat2")
        deadline = time.monotonic() + 20
        while get_json(f"{live_hub.http}/api/capabilities")["capabilities"]["text"]["model"] != "chat2":
            assert time.monotonic() < deadline, "the page did not bind text to chat2"
            time.sleep(0.2)
        page.click("#caps summary")

        camera.eyes_closed = True
        page.wait_for_function("() => document.getElementById('ro-eyes').textContent === 'closed'")
        page.wait_for_function("() => Number(document.getElementById('gauge').dataset.score) >= 0.6")
        page.wait_for_function("() => Number(document.getElementById('ro-perclos').dataset.value) > 0.2")
        assert page.get_attribute("#gauge-level", "data-level") in ("drowsy", "very_drowsy")
        assert int(page.get_attribute("#chart-perclos", "data-points") or 0) >= 2
        for key in ("stream.perclos", "stream.blinks", "stream.fatigue_score", "stream.level"):  # all chips shown
            assert page.is_visible(f'.card[data-backend="fatigue"] .chip[data-key="{key}"]'), key

        page.wait_for_timeout(500)
        assert page.evaluate(LAYOUT_PROBLEMS) == [], "nothing is cut off at 1400 px either"
        shot_wide = tmp_path / "dashboard-1400.png"
        page.screenshot(path=str(shot_wide), full_page=True)

        phone = new_page(browser, 390, 844)
        phone.goto(f"{live_hub.http}/")
        phone.wait_for_function("() => Number(document.getElementById('live-canvas').dataset.boxes) >= 2")
        phone.wait_for_selector('.card[data-backend="fatigue"][data-state="ready"]')
        phone.wait_for_timeout(600)
        problems = phone.evaluate(LAYOUT_PROBLEMS)
        assert problems == [], problems
        shot_phone = tmp_path / "dashboard-390.png"
        phone.screenshot(path=str(shot_phone), full_page=True)
        assert camera.frames > 10
    if os.environ.get("HUB_UPDATE_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot_wide, SCREENSHOTS / "dashboard-1400.png")
        shutil.copyfile(shot_phone, SCREENSHOTS / "dashboard-390.png")


#: Checked in the DOM: the page does not scroll sideways, nothing sticks out of the viewport, and
#: no element cuts its text off (an element whose content is wider than its box while it hides
#: the overflow, or ends it with an ellipsis).
LAYOUT_PROBLEMS = """() => {
  const problems = [];
  const width = document.documentElement.clientWidth;
  const scrolled = document.documentElement.scrollWidth;
  if (scrolled > width) problems.push(`page scrolls sideways: ${scrolled} > ${width}`);
  for (const el of document.querySelectorAll('body *')) {
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden' || el.closest('[hidden]')) continue;
    const rect = el.getBoundingClientRect();
    if (!rect.width && !rect.height) continue;
    const cls = typeof el.className === 'string' && el.className ? '.' + el.className : '';
    const name = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + cls;
    if (rect.right > width + 0.5 || rect.left < -0.5) {
      problems.push(`${name} sticks out: ${rect.left.toFixed(0)}..${rect.right.toFixed(0)}`);
    }
    const hides = ['hidden', 'clip'].includes(style.overflowX) || style.textOverflow === 'ellipsis';
    const hasText = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (hides && hasText && el.scrollWidth > el.clientWidth + 1) {
      problems.push(`${name} clips its text: ${el.textContent.slice(0, 40)}`);
    }
  }
  return problems;
}"""
