"""The CLI's one error style, run as a user runs it: ``error: ...`` on stderr, a documented exit code, no traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.support.processes import (
    ECHO_BACKEND,
    HUB_PYTHON,
    REPO,
    RunningProcess,
    echo_backend_config,
    free_port,
    hub_process,
)

KEY = "front-door-key-1"
NO_HUB, KEY_REFUSED, USAGE, FAILED = 3, 4, 2, 1


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("HUB_API_KEY", "HUB_ADMIN_KEY", "HUB_URL")}
    full_env.update(env or {})
    return subprocess.run(
        [str(HUB_PYTHON), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env, check=False
    )


def hub_cli(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return run("-m", "main_backend", *args, **kw)  # type: ignore[arg-type]


def assert_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """One ``error: ...`` line style, the documented code, and never a traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


@pytest.fixture(scope="module")
def keyed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningProcess]:
    """A hub that wants an API key (its backend is not started: only the key matters here)."""
    tmp = tmp_path_factory.mktemp("keyed")
    config = {"model_backends": {"echo": echo_backend_config()}}
    with hub_process(config, tmp, supervise=False, env={"HUB_API_KEY": KEY}) as hub:
        yield hub


@pytest.mark.parametrize("command", [["list"], ["status", "echo"], ["stop"], ["start", "echo"]])
def test_a_hub_that_refuses_the_key_is_reported_as_such_not_as_absent(
    keyed_hub: RunningProcess, command: list[str]
) -> None:
    args = [*command, "--config", str(keyed_hub.extra["config"]), "--hub", keyed_hub.http]

    missing = hub_cli(*args)
    wrong = hub_cli(*args, env={"HUB_API_KEY": "not-the-key"})
    right = hub_cli(*args, env={"HUB_API_KEY": KEY})

    assert_error(missing, KEY_REFUSED, f"hub at {keyed_hub.http} refused the API key", "HUB_API_KEY")
    assert_error(wrong, KEY_REFUSED, f"hub at {keyed_hub.http} refused the API key", "not one it accepts")
    for result in (missing, wrong):
        assert "no hub" not in result.stdout + result.stderr
        assert "not running" not in result.stdout + result.stderr
    assert "refused" not in right.stdout + right.stderr


def test_the_camera_client_without_the_key_says_so_without_a_traceback(keyed_hub: RunningProcess) -> None:
    result = run("examples/camera_client.py", "--url", keyed_hub.ws, "--frames", "1")
    assert_error(result, KEY_REFUSED, f"the hub at {keyed_hub.ws} refused the API key")


def test_start_and_stop_without_a_hub_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"version": 2, "model_backends": {"echo": echo_backend_config()}}))
    nowhere = f"http://127.0.0.1:{free_port()}"
    for command in ("start", "stop"):
        result = hub_cli(command, "echo", "--config", str(config), "--hub", nowhere)
        assert_error(result, NO_HUB, f"no hub answers at {nowhere}")


def test_a_disabled_backend_is_not_started(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"version": 2, "model_backends": {"off": echo_backend_config(enabled=False)}}))
    result = hub_cli("start", "off", "--config", str(config), "--hub", f"http://127.0.0.1:{free_port()}")
    assert_error(result, USAGE, "off: disabled in the config (enabled: false)")


def test_bad_bundles_and_names_are_one_error_line(tmp_path: Path) -> None:
    garbage = tmp_path / "corrupt.bundle"
    garbage.write_bytes(b"this is not a bundle at all" * 100)
    config = tmp_path / "models.yaml"
    config.write_text("model_backends: {}\n")

    served = hub_cli("serve", "--bundle", str(garbage), "--config", str(config), "--port", str(free_port()))
    unpacked = hub_cli("unpack", str(garbage), "--config", str(config), "--dir", str(tmp_path / "out"))
    packed = hub_cli("pack", "nope", "-o", str(tmp_path / "x.bundle"), "--config", str(config))
    bad_config = hub_cli("list", "--config", str(tmp_path / "missing.yaml"))

    assert_error(served, FAILED, f"cannot serve the bundle {garbage}")
    assert_error(unpacked, FAILED, "unpack failed")
    assert_error(packed, USAGE, "unknown backend nope")
    assert_error(bad_config, USAGE, "missing.yaml")


def test_serve_on_a_taken_port_says_so(tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    config.write_text("model_backends: {}\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hub_cli("serve", "--config", str(config), "--port", str(port))
    assert_error(result, FAILED, f"cannot listen on 127.0.0.1:{port}", "is another hub running there?")


def test_help_documents_the_exit_codes() -> None:
    result = hub_cli("--help")
    assert result.returncode == 0
    assert "exit codes: 0 ok; 1 the command failed; 2 bad arguments" in " ".join(result.stdout.split())


@pytest.mark.slow
@pytest.mark.timeout(900)  # two pip runs into a fresh venv: about 40 s on a quiet machine
def test_setup_shows_one_line_per_venv_and_a_summary_not_pips_output(tmp_path: Path) -> None:
    """A venv made without pip (as ``unpack`` makes them) is set up; pip's chatter stays hidden; a failure shows
    pip's last lines in the error."""
    folder = tmp_path / "tiny_backend"
    folder.mkdir()
    (folder / "main.py").write_text((ECHO_BACKEND / "main.py").read_text())
    (folder / "requirements.txt").write_text("PyYAML\n")
    broken = tmp_path / "broken_backend"
    broken.mkdir()
    (broken / "requirements.txt").write_text("no-such-package-xyz-front==1.0\n")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    config = tmp_path / "models.yaml"
    entries = {
        "tiny": {"path": str(folder), "venv": str(venv), "port": free_port()},
        "broken": {"path": str(broken), "venv": str(venv), "port": free_port()},
    }
    config.write_text(yaml.safe_dump({"version": 2, "model_backends": entries}))

    first = hub_cli("setup", "tiny", "--config", str(config), timeout=600)
    again = hub_cli("setup", "tiny", "--config", str(config))
    failed = hub_cli("setup", "broken", "--config", str(config), timeout=600)

    assert first.returncode == 0, first.stderr
    output = first.stdout + first.stderr
    for chatter in ("Collecting", "Successfully installed", "Requirement already satisfied", "Installing"):
        assert chatter not in output, output
    assert [line.split() for line in first.stderr.splitlines()] == [["tiny", "updated", *first.stderr.split()[2:]]]
    assert first.stdout.startswith("setup: 1 venv(s): 1 updated in "), first.stdout
    assert (venv / "bin" / "pip").exists(), "pip was added to the venv made without it"
    assert again.returncode == 0 and again.stdout.startswith("setup: 1 venv(s): 1 up to date"), again.stdout
    assert_error(failed, FAILED, "broken: ", "no-such-package-xyz-front")
    assert "broken  failed" in failed.stderr
