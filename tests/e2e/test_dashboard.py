"""The dashboard in headless Chromium against a real hub with two echo backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.conftest import two_echo_config
from tests.support.processes import RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_until_final, send_json

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/install_browser.sh (apt-get install chromium)"
)


@pytest.fixture
def browser_page() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
        page.set_default_timeout(20_000)
        try:
            yield page
        finally:
            browser.close()


class Traffic:
    """Sends a steady trickle of requests to one backend in a thread, so charts and results move."""

    def __init__(self, hub: RunningProcess, model: str, interval: float = 0.05) -> None:
        self._hub, self._model, self._interval = hub, model, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.answers = 0

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            try:
                async with await open_ws(self._hub.ws) as ws:
                    while not self._stop.is_set():
                        n += 1
                        rid = f"t{n}"
                        await send_json(
                            ws,
                            {
                                "type": "inference_request",
                                "request_id": rid,
                                "model": self._model,
                                "stream_id": "cam0",
                                "data": {"frame": n, "sleep": 0.002 * (n % 7)},
                            },
                        )
                        await recv_until_final(ws, rid, timeout=10)
                        self.answers += 1
                        await asyncio.sleep(self._interval)
            except (OSError, TimeoutError, ConnectionClosed):
                await asyncio.sleep(0.2)  # keep the trickle going whatever happens to the hub


def one_request(hub: RunningProcess, model: str) -> dict[str, Any]:
    """One request over a blocking client (playwright's sync API owns this thread's event loop)."""
    with connect(hub.ws, open_timeout=10) as ws:
        ws.send(json.dumps({"type": "inference_request", "request_id": "one", "model": model, "data": {"x": 1}}))
        while True:
            answer: dict[str, Any] = json.loads(ws.recv(timeout=10))
            if answer["type"] != "loading":  # progress while the model loads
                return answer


def backend(hub: RunningProcess, name: str) -> dict[str, Any]:
    data: dict[str, Any] = get_json(f"{hub.http}/api/backends/{name}")
    return data


def card(name: str, **attrs: str) -> str:
    return f'.card[data-backend="{name}"]' + "".join(f'[data-{k.replace("_", "-")}="{v}"]' for k, v in attrs.items())


def test_dashboard_follows_a_killed_backend_and_model_unload_without_reloading(
    browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    with hub_process(two_echo_config(), tmp_path, wait_ready=["echo", "echo2"]) as hub, Traffic(hub, "echo") as traffic:
        assert one_request(hub, "echo2")["type"] == "inference_response"
        page.goto(f"{hub.http}/")
        page.wait_for_selector(card("echo", state="ready"))
        page.wait_for_selector(card("echo2", state="ready", model_loaded="true"))
        page.evaluate("window.__sameDocument = true")
        assert page.is_hidden("#keybar"), "no key is configured, so none is asked for"

        old_pid = backend(hub, "echo")["pid"]
        page.wait_for_selector(card("echo", pid=str(old_pid)))
        os.kill(old_pid, signal.SIGKILL)
        page.wait_for_selector('#events li[data-backend="echo"][data-to="down"]')
        page.wait_for_function(
            "([sel, old]) => { const c = document.querySelector(sel);"
            " return c && c.dataset.state === 'ready' && c.dataset.pid && c.dataset.pid !== String(old); }",
            arg=[card("echo"), old_pid],
        )
        assert page.text_content(f'{card("echo")} [data-f="restarts"]') == "1"

        page.click(f'{card("echo2")} button[data-action="unload"]')
        page.wait_for_selector(card("echo2", model_loaded="false"))
        assert page.text_content(f'{card("echo2")} [data-f="model"]') == "not loaded"
        page.click(f'{card("echo2")} button[data-action="load"]')
        page.wait_for_selector(card("echo2", model_loaded="true"))

        page.wait_for_selector(f'{card("echo")} .chip[data-key="echo.frame"]')
        page.wait_for_function("() => document.querySelectorAll('.card .chart polyline').length >= 3")
        assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
        assert traffic.answers > 10


def test_dashboard_feed_needs_the_api_key_when_one_is_set(browser_page: Any, tmp_path: Path) -> None:
    page = browser_page
    env = {"HUB_API_KEY": "dash-key-123"}
    with hub_process(two_echo_config(), tmp_path, env=env) as hub:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{hub.http}/api/events", timeout=5)
        assert refused.value.code == 401
        page.goto(f"{hub.http}/")
        page.wait_for_selector("#keybar", state="visible")
        page.fill("#key-input", "dash-key-123")
        page.click("#keybar button")
        page.wait_for_selector(card("echo"))
        assert "api_key" not in page.url
        page.goto(f"{hub.http}/?api_key=dash-key-123")
        page.wait_for_selector(card("echo2"))
        assert "api_key" not in page.url, "the key stays out of the address bar"
        state = json.loads(
            page.evaluate(
                "fetch('/api/dashboard', {headers: {Authorization: 'Bearer dash-key-123'}}).then(r => r.text())"
            )
        )
        assert {b["name"] for b in state["backends"]} == {"echo", "echo2"}


def burst(hub: RunningProcess, model: str, stream: str, n: int, sleep: float) -> list[dict[str, Any]]:
    """``n`` frames of one stream at once: the hub keeps the newest waiting one, the others are superseded."""
    with connect(hub.ws, open_timeout=10) as ws:
        for i in range(n):
            request = {"type": "inference_request", "request_id": f"b{i}", "model": model, "stream_id": stream}
            ws.send(json.dumps({**request, "data": {"sleep": sleep}}))
        return [json.loads(ws.recv(timeout=20)) for _ in range(n)]


def test_errors_shown_equal_the_hubs_count_after_a_kill_9_and_superseded_frames_are_not_errors(
    browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    config = two_echo_config()
    config["model_backends"]["spare"] = echo_backend_config(enabled=False)
    with hub_process(config, tmp_path, wait_ready=["echo", "echo2"]) as hub:
        answers = burst(hub, "echo", "cam-burst", 6, 0.3)
        assert any(a.get("code") == "superseded" for a in answers), answers
        page.goto(f"{hub.http}/")
        page.wait_for_selector(card("echo", state="ready"))
        with Traffic(hub, "echo", interval=0.0):
            old_pid = backend(hub, "echo")["pid"]
            page.wait_for_timeout(300)
            os.kill(old_pid, signal.SIGKILL)
            page.wait_for_selector('#events li[data-backend="echo"][data-to="down"]')
            page.wait_for_function(
                "([sel, old]) => { const c = document.querySelector(sel);"
                " return c && c.dataset.state === 'ready' && c.dataset.pid !== String(old); }",
                arg=[card("echo"), old_pid],
            )
        hub_view = backend(hub, "echo")
        assert hub_view["errors"] > 0 and hub_view["superseded_total"] > 0, hub_view
        page.wait_for_selector(card("echo", errors=str(hub_view["errors"])))
        assert page.text_content(f'{card("echo")} [data-f="errors"]') == str(hub_view["errors"])
        assert page.text_content(f'{card("echo")} [data-f="superseded"]') == str(hub_view["superseded_total"])

        # a disabled backend: marked, its buttons off, not counted among those that should be ready
        page.wait_for_selector(card("spare", enabled="false"))
        assert page.is_disabled(f'{card("spare")} button[data-action="restart"]')
        assert page.text_content("#hub-ready") == "2 / 2 (1 disabled)"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(urllib.request.Request(f"{hub.http}/api/backends/spare/start", method="POST"))
        assert refused.value.code == 409 and b"enabled: false" in refused.value.read()
        with urllib.request.urlopen(f"{hub.http}/favicon.ico", timeout=5) as icon:
            assert icon.status == 200 and icon.headers["Content-Type"].startswith("image/svg+xml")

        # the hub goes away: the page says so and dims the stale figures
        hub.stop()
        page.wait_for_selector("#stale-banner", state="visible")
        assert page.evaluate("getComputedStyle(document.querySelector('main')).opacity") == "0.45"
        assert page.get_attribute("#link", "data-link") == "reconnecting"
