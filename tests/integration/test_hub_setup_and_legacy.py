"""The original models.yaml format, and a backend built by `setup` in its own venv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import (
    ECHO_BACKEND,
    HUB_PYTHON,
    REPO,
    backend_process,
    free_port,
    get_json,
    hub_process,
    write_config,
)
from tests.support.wsclient import request


async def test_original_config_format_connects_to_running_backends(tmp_path: Path, log_dir: Path) -> None:
    port = free_port()
    with backend_process(ECHO_BACKEND, log_dir, port=port) as backend:
        legacy = {
            "model_backends": {
                "echo": {
                    "host": "127.0.0.1",
                    "port": port,
                    "enabled": True,
                    "reconnect_interval": 0.2,
                    "max_reconnect_attempts": 5,
                    "request_timeout": 10,
                }
            }
        }
        with hub_process(legacy, tmp_path, supervise=True, wait_ready=["echo"], original_format=True) as hub:
            info = get_json(f"{hub.http}/api/backends")["backends"][0]
            answer = await request(
                hub.ws, {"type": "inference_request", "request_id": "r", "model": "echo", "data": {"a": 1}}
            )
    assert info["managed"] is False
    assert info["pid"] == backend.pid  # the hub did not start one of its own
    assert answer["data"]["echo"] == {"a": 1}


def test_a_config_error_names_the_bad_key(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {"model_backends": {"echo": {"port": "not-a-port"}}})
    proc = subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", "serve", "--config", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "model_backends.echo.port" in proc.stderr


@pytest.mark.slow
async def test_setup_builds_a_separate_venv_and_the_hub_starts_the_backend_from_it(tmp_path: Path) -> None:
    folder = tmp_path / "mybackend"
    shutil.copytree(ECHO_BACKEND, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "requirements.txt").write_text("six==1.16.0\n")
    config = {"model_backends": {"mine": {"path": str(folder), "port": free_port(), "ping_interval": 0.5}}}
    cfg = write_config(tmp_path / "models.yaml", config)
    setup = subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", "setup", "mine", "--config", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stderr[-2000:]
    venv_python = folder / ".venv" / "bin" / "python"
    assert venv_python.exists()
    check = subprocess.run(
        [str(venv_python), "-c", "import six, model_backends.base; print(six.__version__)"],
        capture_output=True,
        text=True,
    )
    assert check.stdout.strip() == "1.16.0"
    with hub_process(config, tmp_path, wait_ready=["mine"]) as hub:
        answer = await request(hub.ws, {"type": "inference_request", "request_id": "v", "model": "mine", "data": {}})
    assert answer["type"] == "inference_response"
    assert answer["data"]["python"] == str(folder / ".venv")  # sys.prefix of the backend process
