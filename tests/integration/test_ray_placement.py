"""A backend placed on a local Ray cluster as two replicas: routing, sticky streams, a killed replica, admin."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import io
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support.processes import (
    HUB_PYTHON,
    REPO,
    RunningProcess,
    echo_backend_config,
    free_port,
    get_json,
    hub_process,
    wait_backends_ready,
)
from tests.support.ray_cluster import ray_head
from tests.support.wsclient import open_ws, recv_json, send_json

pytestmark = pytest.mark.skipif(not (HUB_PYTHON.parent / "ray").exists(), reason="Ray is not installed (make test)")


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    with ray_head(num_cpus=4) as address:
        yield address


@pytest.fixture(scope="module")
def ray_hub(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    entry = echo_backend_config(placement="ray", ray_address=ray_address, replicas=2, num_cpus=0.5, max_in_flight=4)
    del entry["port"]
    config = {"model_backends": {"echo": entry}}
    with hub_process(
        config, tmp_path_factory.mktemp("rayhub"), supervise=False, wait_ready=["echo"], timeout=180
    ) as hub:
        wait_replicas_ready(hub, 2)
        yield hub


def echo_snapshot(hub: RunningProcess) -> dict[str, Any]:
    [backend] = [b for b in get_json(f"{hub.http}/api/backends")["backends"] if b["name"] == "echo"]
    return backend  # type: ignore[no-any-return]


def wait_replicas_ready(
    hub: RunningProcess, count: int, timeout: float = 180.0, not_in: set[str] = frozenset()
) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = echo_snapshot(hub)["replicas"]["items"]
        ready = [r["replica"] for r in items if r["connected"]]
        if len(ready) >= count and not set(ready) & not_in:
            return ready
        time.sleep(0.2)
    raise TimeoutError(f"replicas not ready: {echo_snapshot(hub)['replicas']}\n{hub.log_text()[-3000:]}")


async def run_client(url: str, client: int, count: int, window: int = 8) -> list[dict[str, Any]]:
    """Send ``count`` requests with up to ``window`` in flight; every answer, in arrival order."""
    answers: list[dict[str, Any]] = []
    async with await open_ws(url) as ws:
        sent = 0
        while len(answers) < count:
            while sent < count and sent - len(answers) < window:
                data = {"client": client, "n": sent}
                await send_json(
                    ws, {"type": "inference_request", "request_id": f"c{client}-{sent}", "model": "echo", "data": data}
                )
                sent += 1
            answers.append(await recv_json(ws, 30))
    return answers


async def test_two_replicas_serve_2000_requests_from_4_clients_with_none_misrouted(ray_hub: RunningProcess) -> None:
    results = await asyncio.gather(*(run_client(ray_hub.ws, c, 500) for c in range(4)))
    pids: collections.Counter[int] = collections.Counter()
    for client, answers in enumerate(results):
        assert len(answers) == 500
        for answer in answers:
            assert answer["type"] == "inference_response", answer
            echo = answer["data"]["echo"]
            assert answer["request_id"] == f"c{client}-{echo['n']}"
            assert echo["client"] == client
            pids[answer["data"]["pid"]] += 1
    assert len(pids) == 2 and min(pids.values()) > 200  # both replicas did a fair share
    replicas = echo_snapshot(ray_hub)["replicas"]
    assert replicas["ready"] == 2
    assert sum(r["ok"] for r in replicas["items"]) >= 2000
    assert all(r["latency"]["count"] > 0 for r in replicas["items"])


async def test_each_stream_stays_on_its_replica(ray_hub: RunningProcess) -> None:
    seen: dict[str, set[int]] = collections.defaultdict(set)
    async with await open_ws(ray_hub.ws) as ws:
        for n in range(5):
            for s in range(16):
                rid = f"s{s}-{n}"
                await send_json(
                    ws,
                    {
                        "type": "inference_request",
                        "request_id": rid,
                        "model": "echo",
                        "stream_id": f"cam-{s}",
                        "data": {},
                    },
                )
                answer = await recv_json(ws, 30)
                assert answer["type"] == "inference_response", answer
                assert "stream_reset" not in answer
                seen[f"cam-{s}"].add(answer["data"]["pid"])
    assert all(len(pids) == 1 for pids in seen.values()), seen
    assert len(set().union(*seen.values())) == 2  # sixteen streams spread over both replicas


def _post(url: str) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST", data=b"{}", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        import json

        return json.loads(resp.read())  # type: ignore[no-any-return]


def _loaded(hub: RunningProcess) -> list[bool | None]:
    return [r["model_loaded"] for r in echo_snapshot(hub)["replicas"]["items"] if r["connected"]]


def _wait_loaded(hub: RunningProcess, value: bool, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _loaded(hub) != [value, value]:
        time.sleep(0.1)
    assert _loaded(hub) == [value, value]


async def test_unload_and_load_through_the_admin_api_act_on_every_replica(ray_hub: RunningProcess) -> None:
    assert _post(f"{ray_hub.http}/api/backends/echo/load")["result"]["loaded"] is True
    await asyncio.to_thread(_wait_loaded, ray_hub, True)
    assert _post(f"{ray_hub.http}/api/backends/echo/unload")["result"]["loaded"] is False
    await asyncio.to_thread(_wait_loaded, ray_hub, False)
    assert _post(f"{ray_hub.http}/api/backends/echo/load")["result"]["loaded"] is True
    await asyncio.to_thread(_wait_loaded, ray_hub, True)


def test_metrics_show_each_replica(ray_hub: RunningProcess) -> None:
    with urllib.request.urlopen(f"{ray_hub.http}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    ready = [line for line in text.splitlines() if line.startswith('hub_backend_replicas{model="echo",state="ready"}')]
    assert ready and float(ready[0].split()[-1]) == 2.0
    assert text.count('hub_replica_in_flight{model="echo"') == 2


def _ray_kill(address: str, name: str) -> None:
    """``ray.kill`` from another driver, as an operator (or a node failure) would."""
    code = f"import ray; ray.init(address={address!r}, namespace='hub', log_to_driver=False); ray.kill(ray.get_actor({name!r}))"  # noqa: E501
    subprocess.run([str(HUB_PYTHON), "-c", code], check=True, timeout=120, cwd=REPO, capture_output=True)


async def _streaming_load(
    url: str, stop: asyncio.Event, client: int, answers: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """One stream per client, a frame every ~30 ms (each takes 20 ms), until ``stop``."""
    answers = [] if answers is None else answers
    async with await open_ws(url) as ws:
        n = 0
        while not stop.is_set():
            rid = f"k{client}-{n}"
            data = {"sleep": 0.02, "n": n}
            await send_json(
                ws,
                {
                    "type": "inference_request",
                    "request_id": rid,
                    "model": "echo",
                    "stream_id": f"cam-{client}",
                    "data": data,
                },
            )
            answer = await recv_json(ws, 30)
            assert answer["request_id"] == rid
            answers.append(answer)
            n += 1
            await asyncio.sleep(0.01)
    return answers


async def test_a_killed_replica_loses_only_its_in_flight_requests_and_is_replaced(
    ray_hub: RunningProcess, ray_address: str
) -> None:
    before = wait_replicas_ready(ray_hub, 2)
    stop = asyncio.Event()
    first: list[dict[str, Any]] = []
    load = [asyncio.create_task(_streaming_load(ray_hub.ws, stop, 0, first))]
    load += [asyncio.create_task(_streaming_load(ray_hub.ws, stop, c)) for c in range(1, 6)]
    await asyncio.sleep(1.0)
    # the replica that serves client 0's stream (each stream picks one by hashing)
    victim = next(key for key, pid in _replica_pids(ray_hub).items() if pid == first[0]["data"]["pid"])
    await asyncio.to_thread(_ray_kill, ray_address, victim)
    replaced = await asyncio.to_thread(wait_replicas_ready, ray_hub, 2, 180.0, {victim})
    await asyncio.sleep(1.0)  # traffic continues on both
    stop.set()
    results = await asyncio.gather(*load)
    errors = [a for answers in results for a in answers if a["type"] == "error"]
    assert all(e["code"] == "backend_unavailable" and e["retryable"] and victim in e["error"] for e in errors), errors
    assert len(errors) <= 6  # one stream per client, one frame in flight each: at most those on the victim
    for answers in results:
        assert answers[-1]["type"] == "inference_response"  # every client is served again
    moved = [answers for answers in results if any(a["type"] == "error" or a.get("stream_reset") for a in answers)]
    assert moved, "no stream was on the killed replica"
    for answers in moved:  # the first answer after the move says the stream started fresh
        after = [a for a in answers if a["type"] == "inference_response"]
        pids = [a["data"]["pid"] for a in after]
        first_new = next(i for i in range(1, len(pids)) if pids[i] != pids[i - 1])
        assert after[first_new].get("stream_reset") is True
        assert not any(a.get("stream_reset") for a in after[first_new + 1 :])
    snapshot = echo_snapshot(ray_hub)["replicas"]
    assert snapshot["replaced"] >= 1 and victim not in [r["replica"] for r in snapshot["items"]]
    assert set(replaced) - set(before)


async def test_restart_through_the_admin_api_replaces_every_replica(ray_hub: RunningProcess) -> None:
    before = set(wait_replicas_ready(ray_hub, 2))
    await asyncio.to_thread(_post, f"{ray_hub.http}/api/backends/echo/restart")
    after = set(await asyncio.to_thread(wait_replicas_ready, ray_hub, 2, 180.0, before))
    assert not after & before
    answers = await run_client(ray_hub.ws, 9, 20)
    assert all(a["type"] == "inference_response" for a in answers)


FATIGUE = REPO / "model_backends" / "fatigue_backend"


@pytest.fixture(scope="module")
def fatigue_hub(ray_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """One hub with the fatigue backend twice: a local process and one replica on Ray."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "fatigue"], cwd=REPO, check=True, timeout=900)
    common = {"path": str(FATIGUE), "ping_interval": 1.0, "request_timeout": 60}
    config = {
        "model_backends": {
            "fatigue": {**common, "port": free_port()},
            "fatigue_ray": {**common, "placement": "ray", "ray_address": ray_address, "num_cpus": 1},
        }
    }
    tmp = tmp_path_factory.mktemp("fatiguehub")
    with hub_process(config, tmp, wait_ready=["fatigue", "fatigue_ray"], timeout=300) as hub:
        yield hub


@pytest.mark.slow
async def test_the_fatigue_model_on_ray_answers_as_it_does_locally(fatigue_hub: RunningProcess) -> None:
    skimage_data = pytest.importorskip("skimage.data", reason="the test photo comes from scikit-image")
    buf = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buf, format="JPEG", quality=92)
    image = base64.b64encode(buf.getvalue()).decode()
    answers: dict[str, list[dict[str, Any]]] = {}
    async with await open_ws(fatigue_hub.ws) as ws:
        for model in ("fatigue", "fatigue_ray"):
            answers[model] = []
            for n in range(3):
                data = {"image": image, "timestamp": 100.0 + n, "return_landmarks": True}
                rid = f"{model}-{n}"
                await send_json(
                    ws,
                    {"type": "inference_request", "request_id": rid, "model": model, "stream_id": "cam", "data": data},
                )
                answer = await recv_json(ws, 120)
                while answer.get("type") == "loading":
                    answer = await recv_json(ws, 120)
                assert answer["type"] == "inference_response", answer
                answers[model].append({k: v for k, v in answer["data"].items() if k != "inference_ms"})
    assert answers["fatigue"][0]["face_found"] is True
    assert answers["fatigue_ray"] == answers["fatigue"]


def _replica_pids(hub: RunningProcess) -> dict[str, int]:
    return {r["replica"]: r["pid"] for r in echo_snapshot(hub)["replicas"]["items"] if r["connected"]}


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["backend-killed", "backend-hung"])
async def test_a_replica_whose_backend_dies_or_hangs_is_replaced(ray_hub: RunningProcess, sig: signal.Signals) -> None:
    wait_replicas_ready(ray_hub, 2)
    victim, pid = next(iter(_replica_pids(ray_hub).items()))
    os.kill(pid, sig)
    try:
        await asyncio.to_thread(wait_replicas_ready, ray_hub, 2, 180.0, {victim})
    finally:
        if sig is signal.SIGSTOP:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    answers = await run_client(ray_hub.ws, 7, 40)
    assert all(a["type"] == "inference_response" for a in answers)
    assert pid not in {a["data"]["pid"] for a in answers}


def test_replica_backends_run_at_normal_priority_not_rays_worker_niceness(ray_hub: RunningProcess) -> None:
    pids = list(_replica_pids(ray_hub).values())
    assert len(pids) == 2
    assert [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids] == [0, 0]


async def test_an_autoscaling_backend_grows_under_load_and_shrinks_when_idle(ray_address: str, tmp_path: Path) -> None:
    replicas = {"min": 1, "max": 2, "target_in_flight": 1, "scale_down_after": 2}
    entry = echo_backend_config(placement="ray", ray_address=ray_address, replicas=replicas, num_cpus=0.5)
    del entry["port"]
    with hub_process({"model_backends": {"echo": entry}}, tmp_path, wait_ready=["echo"], timeout=180) as hub:
        assert echo_snapshot(hub)["replicas"]["desired"] == 1
        stop = asyncio.Event()
        load = [asyncio.create_task(_streaming_load(hub.ws, stop, c)) for c in range(4)]
        try:
            await asyncio.to_thread(wait_replicas_ready, hub, 2, 180.0)
        finally:
            stop.set()
            await asyncio.gather(*load)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and echo_snapshot(hub)["replicas"]["ready"] != 1:
            await asyncio.sleep(0.2)
        assert echo_snapshot(hub)["replicas"]["ready"] == 1
        assert echo_snapshot(hub)["replicas"]["desired"] == 1


def test_a_ray_address_where_nothing_answers_marks_the_backend_failed_with_the_reason(tmp_path: Path) -> None:
    entry = echo_backend_config(placement="ray", ray_address=f"127.0.0.1:{free_port()}")
    del entry["port"]
    with hub_process({"model_backends": {"echo": entry}}, tmp_path) as hub:
        wait_backends_ready(hub, ["echo"], 120, state="failed")
        backend = echo_snapshot(hub)
        assert "cannot join the Ray cluster" in backend["last_error"]
        assert "nothing answers there" in backend["last_error"]


def test_without_an_address_the_hub_starts_a_local_cluster_and_stops_it_with_itself(tmp_path: Path) -> None:
    import psutil

    entry = echo_backend_config(placement="ray", replicas=1, num_cpus=0.5)
    del entry["port"]
    with hub_process({"model_backends": {"echo": entry}}, tmp_path, wait_ready=["echo"], timeout=240) as hub:
        wait_replicas_ready(hub, 1)
        assert echo_snapshot(hub)["replicas"]["ray_address"] == "local"
        started = psutil.Process(hub.pid).children(recursive=True)
        assert any("raylet" in " ".join(p.cmdline()) for p in started)  # the cluster is the hub's own
    _, alive = psutil.wait_procs(started, timeout=30)
    assert not alive, [p.cmdline()[:2] for p in alive]
