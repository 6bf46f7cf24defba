"""Backends killed, frozen and restarted under steady load: every request gets one answer, to its owner."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from websockets.asyncio.client import ClientConnection

from tests.support.processes import RunningProcess, echo_backend_config, get_json, hub_process
from tests.support.wsclient import open_ws, recv_json, recv_until_final, send_json

CHAOS_SECONDS = 25.0
CLIENTS = 4
IN_FLIGHT_PER_CLIENT = 4
BACKENDS = ("a", "b")
FAULTS = ("sigkill", "sigstop_then_cont", "sigstop_until_detected", "admin_restart")


def _post(url: str) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, method="POST")  # no body: a form content type would be refused (415)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _backend(hub: RunningProcess, name: str) -> dict[str, Any]:
    return next(b for b in get_json(f"{hub.http}/api/backends")["backends"] if b["name"] == name)


def _is_final(msg: dict[str, Any]) -> bool:
    return msg["type"] == "error" or (msg["type"] == "inference_response" and msg.get("done", True))


@dataclass
class LoadClient:
    """One client with a few requests in flight at all times; it records every final answer."""

    cid: int
    ws: ClientConnection
    sent: dict[str, str] = field(default_factory=dict)  # request_id -> backend
    finals: collections.Counter[str] = field(default_factory=collections.Counter)
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    strangers: list[dict[str, Any]] = field(default_factory=list)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT_PER_CLIENT))

    async def send_until(self, deadline: float, rng: random.Random) -> None:
        seq = 0
        while time.monotonic() < deadline:
            await self.slots.acquire()
            rid = f"c{self.cid}-{seq}"
            backend = rng.choice(BACKENDS)
            self.sent[rid] = backend
            data = {"client": self.cid, "seq": seq, "sleep": round(rng.uniform(0, 0.02), 4)}
            await send_json(self.ws, {"type": "inference_request", "request_id": rid, "model": backend, "data": data})
            seq += 1

    async def read_until_answered(self, sending: asyncio.Task[None]) -> None:
        while not (sending.done() and set(self.sent) <= set(self.finals)):
            msg = await recv_json(self.ws, timeout=30)
            if not _is_final(msg):
                continue
            rid = msg.get("request_id")
            if rid not in self.sent or (
                msg["type"] == "inference_response" and msg["data"]["echo"]["client"] != self.cid
            ):
                self.strangers.append(msg)
                continue
            self.finals[rid] += 1
            self.codes[msg.get("code", "ok")] += 1
            if self.finals[rid] == 1:
                self.slots.release()


async def _recovery_seconds(probe: ClientConnection, backend: str, since: float, limit: float = 25.0) -> float:
    """Seconds from ``since`` until a request to ``backend`` succeeds again."""
    attempt = 0
    while time.monotonic() - since < limit:
        rid = f"probe-{backend}-{since}-{attempt}"
        attempt += 1
        msg = {"type": "inference_request", "request_id": rid, "model": backend, "data": {}, "timeout": 1.0}
        await send_json(probe, msg)
        [answer] = await recv_until_final(probe, rid, timeout=10)
        if answer["type"] == "inference_response":
            return time.monotonic() - since
        await asyncio.sleep(0.05)
    raise AssertionError(f"{backend} did not come back within {limit}s")


async def _inject(hub: RunningProcess, backend: str, fault: str) -> None:
    pid = int(_backend(hub, backend)["pid"])
    if fault == "sigkill":
        os.kill(pid, signal.SIGKILL)
    elif fault == "sigstop_then_cont":
        os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(0.7)
        os.kill(pid, signal.SIGCONT)
    elif fault == "sigstop_until_detected":
        os.kill(pid, signal.SIGSTOP)  # the hub's pings notice, kill it and start a new one
    else:
        status, body = await asyncio.to_thread(_post, f"{hub.http}/api/backends/{backend}/restart")
        assert status == 200, body


async def _faults(
    hub: RunningProcess, deadline: float, rng: random.Random, injected: collections.Counter[tuple[str, str]]
) -> dict[str, list[float]]:
    recoveries: dict[str, list[float]] = collections.defaultdict(list)
    async with await open_ws(hub.ws) as probe:
        n = 0
        while time.monotonic() < deadline:
            backend, fault = rng.choice(BACKENDS), FAULTS[n % len(FAULTS)]
            n += 1
            since = time.monotonic()
            await _inject(hub, backend, fault)
            injected[(backend, fault)] += 1
            recoveries[fault].append(await _recovery_seconds(probe, backend, since))
            await asyncio.sleep(rng.uniform(0.3, 1.5))
    return recoveries


@pytest.mark.slow
async def test_under_load_faults_lose_no_answer_and_misroute_none(tmp_path: Path) -> None:
    backend = {"keep_alive": -1, "request_timeout": 8, "max_restarts": 1000, "unhealthy_after": 2}
    config = {
        "hub": {"client_rate_limit": 10000.0, "client_max_in_flight": 64, "shutdown_grace": 2},
        "model_backends": {name: echo_backend_config(**backend) for name in BACKENDS},
    }
    rng = random.Random(8)
    with hub_process(config, tmp_path, wait_ready=list(BACKENDS)) as hub:
        deadline = time.monotonic() + CHAOS_SECONDS
        clients = [LoadClient(cid, await open_ws(hub.ws)) for cid in range(CLIENTS)]
        senders = [asyncio.create_task(c.send_until(deadline, random.Random(c.cid))) for c in clients]
        readers = [asyncio.create_task(c.read_until_answered(s)) for c, s in zip(clients, senders, strict=True)]
        injected: collections.Counter[tuple[str, str]] = collections.Counter()
        recoveries = await _faults(hub, deadline, rng, injected)
        await asyncio.wait_for(asyncio.gather(*senders, *readers), timeout=60)
        for c in clients:
            await c.ws.close()
        assert hub.proc.poll() is None
        children = psutil.Process(hub.pid).children(recursive=True)
        alive = [p for p in children if p.status() != psutil.STATUS_ZOMBIE]
        assert len(alive) == len(BACKENDS), [p.cmdline() for p in children]
        restarts = {name: _backend(hub, name)["restarts"] for name in BACKENDS}

    sent = sum(len(c.sent) for c in clients)
    codes = sum((c.codes for c in clients), collections.Counter())
    assert all(not c.strangers for c in clients), [c.strangers[:3] for c in clients]
    for c in clients:
        assert set(c.finals) == set(c.sent), f"client {c.cid}: {len(set(c.sent) - set(c.finals))} unanswered"
        assert max(c.finals.values()) == 1, f"client {c.cid}: a request got two final answers"
    for name in BACKENDS:  # a crash and a hang each count as a restart; an admin restart does not
        faults_on = injected[(name, "sigkill")] + injected[(name, "sigstop_until_detected")]
        assert restarts[name] >= faults_on, (name, restarts, injected)
    faults = sum(len(v) for v in recoveries.values())
    assert faults >= len(FAULTS) and codes["ok"] > sent // 2
    assert set(codes) <= {"ok", "backend_unavailable", "timeout"}, codes
    summary = {k: [round(s, 2) for s in v] for k, v in recoveries.items()}
    print(f"chaos: {sent} requests, {faults} faults, answers {dict(codes)}, restarts {restarts}, recovery s {summary}")


async def test_a_crash_loop_marks_the_backend_failed_and_an_admin_restart_revives_it(tmp_path: Path) -> None:
    flag = tmp_path / "crash-at-start"
    flag.write_text("remove me to let the backend start")
    flaky = echo_backend_config(
        required=True, max_restarts=2, restart_window=60, env={"ECHO_CRASH_AT_START": str(flag)}, keep_alive=-1
    )
    config = {"model_backends": {"flaky": flaky, "echo": echo_backend_config(keep_alive=-1)}}
    with hub_process(config, tmp_path, wait_ready=["echo"]) as hub:
        deadline = time.monotonic() + 30
        while (state := _backend(hub, "flaky"))["state"] != "failed":
            assert time.monotonic() < deadline, state
            await asyncio.sleep(0.2)
        assert "crashed 3 times in 60s" in state["last_error"] and state["pid"] is None
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            get_json(f"{hub.http}/readyz")
        assert not_ready.value.code == 503
        assert json.loads(not_ready.value.read())["problems"] == ["flaky: failed"]
        await asyncio.sleep(2.5)  # no more restarts while failed
        assert _backend(hub, "flaky")["restarts"] == state["restarts"]
        async with await open_ws(hub.ws) as ws:
            await send_json(ws, {"type": "inference_request", "request_id": "x", "model": "flaky", "data": {}})
            [answer] = await recv_until_final(ws, "x")
            assert answer["code"] == "backend_unavailable" and "crashed 3 times" in answer["error"]
            await send_json(ws, {"type": "inference_request", "request_id": "y", "model": "echo", "data": {}})
            [other] = await recv_until_final(ws, "y")
            assert other["type"] == "inference_response"  # the hub and the other backend are unharmed

            flag.unlink()  # the cause is gone; an admin restart brings it back
            status, body = _post(f"{hub.http}/api/backends/flaky/restart")
            assert status == 200, body
            deadline = time.monotonic() + 30
            while _backend(hub, "flaky")["state"] != "ready":
                assert time.monotonic() < deadline, _backend(hub, "flaky")
                await asyncio.sleep(0.2)
            assert get_json(f"{hub.http}/readyz")["ready"] is True
            await send_json(ws, {"type": "inference_request", "request_id": "z", "model": "flaky", "data": {}})
            [revived] = await recv_until_final(ws, "z")
        assert revived["type"] == "inference_response"
    assert "crashing at start as asked" in (tmp_path / "logs" / "flaky.log").read_text()
