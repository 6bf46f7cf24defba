"""The dashboard's replica view in headless Chromium, against a real hub with a backend on a local Ray cluster.

One echo backend is placed on Ray as two replicas, another runs as a local process. The Ray-placed
card shows "2 / 2 ready" and one row per replica with the state, in-flight count, p50 latency and
stream count that /api/backends reports; the local card shows no replica section. The layout holds
from a 360 px phone to a wide screen (no sideways scroll, no clipped text).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.e2e.test_dashboard import CHROMIUM, CHROMIUM_ARGS, card
from tests.e2e.test_live_view import LAYOUT_PROBLEMS
from tests.integration.test_ray_placement import echo_snapshot, wait_replicas_ready
from tests.support.processes import HUB_PYTHON, RunningProcess, echo_backend_config, hub_process
from tests.support.ray_cluster import ray_head

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: run scripts/install_browser.sh"),
    pytest.mark.skipif(not (HUB_PYTHON.parent / "ray").exists(), reason="Ray is not installed (make test)"),
]


@pytest.fixture
def ray_and_local_hub(tmp_path: Path) -> Iterator[RunningProcess]:
    with ray_head(num_cpus=4) as address:
        entry = echo_backend_config(placement="ray", ray_address=address, replicas=2, num_cpus=0.5)
        del entry["port"]
        config = {"model_backends": {"echo": entry, "local": echo_backend_config()}}
        with hub_process(config, tmp_path, wait_ready=["echo", "local"], timeout=180) as hub:
            wait_replicas_ready(hub, 2)
            yield hub


def requests_on_streams(hub: RunningProcess, streams: int, per_stream: int) -> None:
    """A few answered requests on several streams, so the replicas have latency and streams to show."""
    with connect(hub.ws, open_timeout=10) as ws:
        for n in range(streams * per_stream):
            rid = f"r{n}"
            stream = f"cam{n % streams}"
            request = {"type": "inference_request", "request_id": rid, "model": "echo", "stream_id": stream}
            ws.send(json.dumps({**request, "data": {"n": n}}))
            while True:
                answer = json.loads(ws.recv(timeout=20))
                if answer.get("request_id") == rid and answer["type"] != "loading":
                    assert answer["type"] == "inference_response", answer
                    break


def test_ray_backend_card_shows_its_replicas_and_a_local_card_does_not(
    ray_and_local_hub: RunningProcess,
) -> None:
    hub = ray_and_local_hub
    requests_on_streams(hub, streams=6, per_stream=3)
    items = echo_snapshot(hub)["replicas"]["items"]
    assert len(items) == 2 and all(r["state"] == "ready" for r in items), items
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900}, device_scale_factor=1)
            page.set_default_timeout(30_000)
            page.goto(f"{hub.http}/")
            page.wait_for_selector(card("echo", replicas_ready="2"))
            rows = f"{card('echo')} .replica"
            assert page.text_content(f'{card("echo")} [data-f="replicas-count"]') == "2 / 2 ready"
            shown = page.eval_on_selector_all(
                rows,
                "els => els.map(e => ({replica: e.dataset.replica, state: e.dataset.state,"
                " text: e.querySelector('.rstate').textContent,"
                " p50: e.querySelector('[data-rf=p50] b').textContent,"
                " streams: Number(e.querySelector('[data-rf=streams] b').textContent),"
                " in_flight: Number(e.querySelector('[data-rf=in_flight] b').textContent)}))",
            )
            items = echo_snapshot(hub)["replicas"]["items"]
            assert sorted(r["replica"] for r in shown) == sorted(r["replica"] for r in items)
            assert all(r["state"] == r["text"] == "ready" for r in shown), shown
            assert sum(r["streams"] for r in shown) == sum(r["streams"] for r in items) == 6
            assert all(r["in_flight"] == 0 for r in shown), shown
            served = {r["replica"] for r in items if r["latency"]["p50_ms"] is not None}
            assert served, items
            assert all(r["p50"].endswith(" ms") for r in shown if r["replica"] in served), shown

            # a local backend looks as it did: no replica section
            page.wait_for_selector(card("local", state="ready"))
            assert page.is_hidden(f'{card("local")} [data-f="replicas"]')
            assert page.locator(f"{card('local')} .replica").count() == 0

            for width in (360, 390, 768, 1360):
                page.set_viewport_size({"width": width, "height": 900})
                page.wait_for_timeout(200)
                assert page.locator(rows).count() == 2
                assert page.evaluate(LAYOUT_PROBLEMS) == [], f"at {width} px"
                rights = "els => Math.max(...els.map(e => e.getBoundingClientRect().right))"
                row_right = page.eval_on_selector_all(rows, rights)
                assert row_right <= width, f"a replica row sticks out at {width} px"
        finally:
            browser.close()
