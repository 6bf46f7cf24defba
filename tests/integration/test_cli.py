"""The launcher CLI (list, status, start, stop) against a real hub with echo backends."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.processes import (
    ECHO_BACKEND,
    HUB_PYTHON,
    REPO,
    RunningProcess,
    backend_states,
    echo_backend_config,
    free_port,
    get_json,
    hub_process,
    wait_backends_ready,
)


@pytest.fixture(scope="module")
def cli_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """echo (256 MB) and echo2 (512 MB) supervised; 'pinned' is disabled, with pins its venv breaks."""
    tmp = tmp_path_factory.mktemp("cli")
    pinned = tmp / "pinned_backend"
    pinned.mkdir()
    shutil.copy(ECHO_BACKEND / "main.py", pinned / "main.py")
    (pinned / "requirements.txt").write_text(
        "# one satisfied, one at another version, one absent\n"
        "PyYAML==6.0.3\nwebsockets==0.0.1\nno-such-package-xyz==1.0\n"
    )
    config = {
        "model_backends": {
            "echo": echo_backend_config(memory_mb=256),
            "echo2": echo_backend_config(memory_mb=512),
            "pinned": echo_backend_config(path=str(pinned), memory_mb=100, enabled=False),
        }
    }
    with hub_process(config, tmp, wait_ready=["echo", "echo2"]) as hub:
        yield hub


def cli(
    hub: RunningProcess, *args: str, env: dict[str, str] | None = None, hub_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m main_backend ARGS --config <the hub's config> --hub <its URL>``, piped."""
    cmd = [
        str(HUB_PYTHON),
        "-m",
        "main_backend",
        *args,
        "--config",
        str(hub.extra["config"]),
        "--hub",
        hub_url or hub.http,
    ]
    full_env = {**os.environ, **(env or {})}
    full_env.pop("HUB_FAKE_FREE_MEMORY_MB", None)
    full_env.update(env or {})
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, env=full_env, check=False)


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_prints_a_plain_table_of_every_backend_when_piped(cli_hub: RunningProcess) -> None:
    result = cli(cli_hub, "list")
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout, "no colour codes when piped"
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["BACKEND", "ENABLED", "VENV", "DEPENDENCIES", "MEMORY", "STATE", "PORT"]
    rows = {line.split()[0]: line for line in lines[1:4]}
    assert set(rows) == {"echo", "echo2", "pinned"}
    assert "ready" in rows["echo"].split() and "256 MB" in rows["echo"]
    assert "1 missing, 1 differ" in rows["pinned"]
    assert rows["pinned"].split()[-2] == "stopped"
    assert "running" in lines[-1]


def test_list_json_reports_dependencies_against_the_pins(cli_hub: RunningProcess) -> None:
    data = as_json(cli(cli_hub, "list", "--json"))
    assert data["hub"]["running"] is True
    backends = {b["name"]: b for b in data["backends"]}
    assert backends["echo"]["running"] is True and backends["echo"]["state"] == "ready"
    assert backends["echo"]["memory_mb"] == 256
    deps = backends["pinned"]["dependencies"]
    assert deps["satisfied"] is False
    assert deps["missing"] == ["no-such-package-xyz"]
    assert deps["mismatched"] == {"websockets": {"wanted": "0.0.1", "installed": "15.0.1"}}
    assert {"name": "pyyaml", "wanted": "6.0.3", "installed": "6.0.3"} in deps["packages"]
    assert backends["pinned"]["enabled"] is False and backends["pinned"]["running"] is False


def test_status_shows_config_live_state_packages_and_the_log(cli_hub: RunningProcess) -> None:
    result = cli(cli_hub, "status", "echo", "--lines", "5")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("echo  ready  live from the hub at")
    for section in ("config", "live", "packages", "log ("):
        assert f"\n{section}" in out
    pid = get_json(f"{cli_hub.http}/api/backends/echo")["pid"]
    assert f"pid:                {pid}" in out
    assert "256 MB declared" in out
    assert "echo listening on ws://" in out, "the last lines of <log_dir>/echo.log"


def test_status_json_carries_everything(cli_hub: RunningProcess) -> None:
    data = as_json(cli(cli_hub, "status", "pinned", "--json"))
    assert data["config"]["memory_mb"] == 100 and data["config"]["enabled"] is False
    assert data["live"]["state"] == "stopped"
    assert data["dependencies"]["missing"] == ["no-such-package-xyz"]
    assert data["log"]["path"].endswith("pinned.log") and data["log"]["lines"] == []


@pytest.mark.parametrize("command", ["status", "start", "stop"])
def test_unknown_backend_names_exit_2_listing_the_known_ones(cli_hub: RunningProcess, command: str) -> None:
    result = cli(cli_hub, command, "nope")
    assert result.returncode == 2
    assert "unknown backend nope; known: echo, echo2, pinned" in result.stderr


def test_start_and_stop_need_a_running_hub(cli_hub: RunningProcess) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = cli(cli_hub, "start", "echo", hub_url=nowhere)
    assert started.returncode == 3 and f"no hub answers at {nowhere}" in started.stderr
    status = cli(cli_hub, "status", "echo", hub_url=nowhere)
    assert status.returncode == 0 and f"no hub answers at {nowhere}; from disk" in status.stdout


def test_start_with_no_names_starts_what_fits_in_free_memory(cli_hub: RunningProcess) -> None:
    stopped = as_json(cli(cli_hub, "stop", "--json"))
    assert sorted(r["backend"] for r in stopped["results"]) == ["echo", "echo2"]
    assert all(r["ok"] and r["state"] == "stopped" for r in stopped["results"]), stopped
    assert backend_states(cli_hub) == {"echo": "stopped", "echo2": "stopped", "pinned": "stopped"}

    fake = {"HUB_FAKE_FREE_MEMORY_MB": "600"}
    plan = cli(cli_hub, "start", "--dry-run", env=fake)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[0] == (
        "600 MB free (HUB_FAKE_FREE_MEMORY_MB): starting echo (256 MB); skipping echo2 (512 MB) that would not fit"
    )
    assert backend_states(cli_hub)["echo"] == "stopped", "a dry run starts nothing"

    started = as_json(cli(cli_hub, "start", "--wait", "30", "--json", env=fake))
    assert started["default"]["chosen"] == ["echo"] and started["default"]["skipped"] == ["echo2"]
    assert started["default"]["free_memory_mb"] == 600
    assert started["results"] == [{"backend": "echo", "action": "start", "ok": True, "error": None, "state": "ready"}]
    assert backend_states(cli_hub) == {"echo": "ready", "echo2": "stopped", "pinned": "stopped"}

    named = cli(cli_hub, "start", "echo2", "--wait", "30")
    assert named.returncode == 0, named.stderr
    assert named.stdout.strip() == "echo2: started"
    wait_backends_ready(cli_hub, ["echo", "echo2"])


def test_the_camera_client_example_streams_binary_frames_that_reach_the_dashboard(cli_hub: RunningProcess) -> None:
    wait_backends_ready(cli_hub, ["echo", "echo2"])
    cmd = [str(HUB_PYTHON), "examples/camera_client.py", "--url", cli_hub.ws, "--models", "echo", "echo2"]
    result = subprocess.run(
        [*cmd, "--frames", "6", "--fps", "20", "--stream-id", "dash-cam"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(" 0 errors")
    results = get_json(f"{cli_hub.http}/api/dashboard")["results"]
    for name in ("echo", "echo2"):
        assert results[name]["request_id"].startswith("dash-cam-")
        assert isinstance(results[name]["fields"]["echo.timestamp"], float), "the frame's header data arrived"
