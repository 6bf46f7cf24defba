"""Model downloads through a real hub and the CLI, from a local mirror that cuts the first transfer
of the weights half-way (tests/support/hf_mirror.py): the download resumes with a ranged GET,
progress events arrive on the way, the file in the cache is complete, and the VLM backend's
model resolution finds it by repo id.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hf_mirror import COMMIT, hf_mirror
from tests.support.processes import HUB_PYTHON, REPO, RunningProcess, free_port, get_json, hub_process

REPO_ID = "test-org/tiny-model"
#: Over huggingface_hub's 10 MB write chunk, so the cut leaves a partial file to resume from.
WEIGHTS_BYTES = 24 * 1024 * 1024
ADMIN = {"Authorization": "Bearer admin-key"}


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "tiny"}')
    (folder / "weights.bin").write_bytes(os.urandom(WEIGHTS_BYTES))
    return folder


@pytest.fixture
def mirror(tmp_path: Path, model_folder: Path) -> Iterator[RunningProcess]:
    with hf_mirror(tmp_path, REPO_ID, model_folder, cut="weights.bin", slice_delay=0.01) as running:
        yield running


def events(url: str) -> Iterator[tuple[str, dict[str, Any]]]:
    req = urllib.request.Request(url, headers=ADMIN)
    with urllib.request.urlopen(req, timeout=60) as resp:
        kind = ""
        for line in resp:
            if line.startswith(b"event: "):
                kind = line[7:].strip().decode()
            elif line.startswith(b"data: "):
                yield kind, json.loads(line[6:])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_resumed_and_complete(mirror: RunningProcess, cache: Path, model_folder: Path) -> Path:
    log = get_json(f"{mirror.http}/_log")
    weights = [e for e in log if e["method"] == "GET" and e["path"].endswith("/weights.bin")]
    assert len(weights) == 2, weights
    assert weights[0]["range"] is None
    assert weights[1]["range"] is not None and weights[1]["range"].startswith("bytes=")
    resumed_from = int(weights[1]["range"][6:].rstrip("-"))
    assert 0 < resumed_from < WEIGHTS_BYTES  # continued where the cut left it, not from the start
    snapshot = cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert sha256(snapshot / "weights.bin") == sha256(model_folder / "weights.bin")
    assert (snapshot / "config.json").read_text() == '{"model_type": "tiny"}'
    return snapshot


def test_a_download_through_the_hub_resumes_after_a_cut_with_progress_events(
    tmp_path: Path, mirror: RunningProcess, model_folder: Path
) -> None:
    cache = tmp_path / "hf-cache"
    config = {"hub": {"hf_cache_dir": str(cache)}, "model_backends": {}}
    with hub_process(config, tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}) as hub:
        body = json.dumps({"repo_id": REPO_ID, "endpoint": mirror.http}).encode()
        req = urllib.request.Request(
            f"{hub.http}/api/downloads", data=body, method="POST", headers={"Content-Type": "application/json", **ADMIN}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
            started = json.loads(resp.read())
        seen = list(events(f"{hub.http}/api/downloads/{started['id']}/events"))
        listed = get_json(f"{hub.http}/api/downloads", headers=ADMIN)["downloads"]
    kinds = [kind for kind, _ in seen]
    assert kinds[-1] == "done", seen[-1]
    partway = [r["bytes_done"] for kind, r in seen if kind == "progress" and 0 < r["bytes_done"] < WEIGHTS_BYTES]
    assert len(partway) >= 2 and partway == sorted(partway)  # several, growing, before the end
    final = seen[-1][1]
    assert final["bytes_done"] == final["bytes_total"] >= WEIGHTS_BYTES
    assert (final["files_done"], final["files_total"]) == (2, 2)
    snapshot = assert_resumed_and_complete(mirror, cache, model_folder)
    assert final["path"] == str(snapshot)
    assert [(d["id"], d["state"]) for d in listed] == [(started["id"], "done")]

    # The VLM backend's model resolution finds it in the same cache by its repo id.
    resolve = "from vlm_engine.model_loader import resolve_model_folder as r; import sys; print(r(sys.argv[1]))"
    found = subprocess.run(
        [str(HUB_PYTHON), "-c", resolve, f"{REPO_ID}@main"],
        cwd=REPO / "model_backends" / "vlm_backend",
        env={**os.environ, "HF_HUB_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == str(snapshot)


def test_the_download_command_resumes_after_a_cut_and_draws_a_progress_bar(
    tmp_path: Path, mirror: RunningProcess, model_folder: Path
) -> None:
    cache = tmp_path / "hf-cache"
    done = subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", "download", REPO_ID, "--endpoint", mirror.http],
        cwd=REPO,
        env={**os.environ, "HF_HUB_CACHE": str(cache)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "Trying to resume download" in done.stderr
    snapshot = assert_resumed_and_complete(mirror, cache, model_folder)
    assert f"done: {snapshot}" in done.stdout


def test_a_download_cut_by_a_hub_restart_is_interrupted_and_completes_when_started_again(
    tmp_path: Path, model_folder: Path
) -> None:
    cache = tmp_path / "hf-cache"
    config = {"hub": {"hf_cache_dir": str(cache)}, "model_backends": {}}
    env = {"HUB_ADMIN_KEY": "admin-key"}
    with hf_mirror(tmp_path, REPO_ID, model_folder, slice_delay=0.1) as mirror:  # about 10 s for the weights
        body = json.dumps({"repo_id": REPO_ID, "endpoint": mirror.http}).encode()
        headers = {"Content-Type": "application/json", **ADMIN}
        with hub_process(config, tmp_path, env=env) as hub:
            req = urllib.request.Request(f"{hub.http}/api/downloads", data=body, method="POST", headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                first = json.loads(resp.read())
            for _kind, record in events(f"{hub.http}/api/downloads/{first['id']}/events"):
                if record["files_done"] == 1:  # config.json is complete, the weights are on their way
                    break
            stopping = time.monotonic()
            assert hub.stop() == 0
            assert time.monotonic() - stopping < 8  # the download did not hold the hub up (about 10 s more)
        with hub_process(config, tmp_path, env=env) as hub:
            [record] = get_json(f"{hub.http}/api/downloads", headers=ADMIN)["downloads"]
            assert (record["id"], record["state"]) == (first["id"], "interrupted")
            assert record["bytes_done"] < WEIGHTS_BYTES
            req = urllib.request.Request(f"{hub.http}/api/downloads", data=body, method="POST", headers=headers)
            with urllib.request.urlopen(req, timeout=10) as resp:
                again = json.loads(resp.read())
            kinds = [kind for kind, _ in events(f"{hub.http}/api/downloads/{again['id']}/events")]
            assert kinds[-1] == "done"
        log = get_json(f"{mirror.http}/_log")
    # Files completed before the restart are kept; huggingface_hub 1.33 starts a cut file over.
    assert [e["path"] for e in log if e["method"] == "GET" and e["path"].endswith("/config.json")] == [
        f"/{REPO_ID}/resolve/{COMMIT}/config.json"
    ]
    snapshot = cache / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert sha256(snapshot / "weights.bin") == sha256(model_folder / "weights.bin")


@pytest.mark.slow
def test_the_vlm_backend_answers_with_a_model_downloaded_through_the_hub(tmp_path: Path) -> None:
    vlm_dir = REPO / "model_backends" / "vlm_backend"
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "vlm"], cwd=REPO, check=True, timeout=900)
    model = tmp_path / "tiny-vlm"
    build = [str(vlm_dir / ".venv" / "bin" / "python"), "-m", "tests.support.tiny_vlm", str(model)]
    subprocess.run(build, cwd=REPO, check=True, timeout=300, capture_output=True)
    cache = tmp_path / "hf-cache"
    vlm = {"path": str(vlm_dir), "port": free_port(), "chat": True, "model_path": "test-org/tiny-vlm", "device": "cpu"}
    config = {
        "hub": {"hf_cache_dir": str(cache)},
        "model_backends": {"vlm": {**vlm, "ping_interval": 0.5, "request_timeout": 120}},
        "capabilities": {"vision": "vlm"},
    }
    with (
        hf_mirror(tmp_path, "test-org/tiny-vlm", model) as mirror,
        hub_process(config, tmp_path, env={"HUB_ADMIN_KEY": "admin-key"}, wait_ready=["vlm"], timeout=120) as hub,
    ):
        body = json.dumps({"repo_id": "test-org/tiny-vlm", "endpoint": mirror.http}).encode()
        headers = {"Content-Type": "application/json", **ADMIN}
        req = urllib.request.Request(f"{hub.http}/api/downloads", data=body, method="POST", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            started = json.loads(resp.read())
        assert [k for k, _ in events(f"{hub.http}/api/downloads/{started['id']}/events")][-1] == "done"
        chat = {"model": "vision", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
        req = urllib.request.Request(
            f"{hub.http}/v1/chat/completions", data=json.dumps(chat).encode(), method="POST", headers=headers
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.loads(resp.read())
        backend = get_json(f"{hub.http}/api/backends/vlm")
    assert answer["model"] == "vlm" and answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert backend["model_loaded"] is True and backend["model"] == "test-org/tiny-vlm"
