"""A remote backend over wss:// with its token: a private CA or a pinned certificate; ws:// only on loopback."""

from __future__ import annotations

import hashlib
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.support.processes import ECHO_BACKEND, HUB_PYTHON, REPO, backend_states, free_port, hub_process, write_config
from tests.support.wsclient import request

TOKEN = "remote-test-token-0123456789"


@dataclass
class TlsBackend:
    port: int
    cert: Path
    fingerprint: str


def _self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def tls_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBackend]:
    """The echo backend serving wss:// with a self-signed certificate and a token, as on another host."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _self_signed(folder)
    port = free_port()
    cmd = [str(HUB_PYTHON), "main.py", "--host", "127.0.0.1", "--port", str(port),
           "--tls-cert", str(cert), "--tls-key", str(key)]  # fmt: skip
    with (folder / "backend.log").open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=ECHO_BACKEND, stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        context = ssl.create_default_context(cafile=str(cert))
        _wait_pong(f"wss://localhost:{port}", context, proc)
        der = ssl.PEM_cert_to_DER_cert(cert.read_text())
        yield TlsBackend(port, cert, hashlib.sha256(der).hexdigest())
    finally:
        proc.terminate()
        proc.wait(15)


def _env() -> dict[str, str]:
    import os

    return {**os.environ, "HUB_BACKEND_TOKEN": TOKEN, "PYTHONPATH": str(REPO)}


def _wait_pong(url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"TLS backend exited with {proc.returncode}")
        try:
            with connect(url, ssl=context, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                ws.send(json.dumps({"type": "health_check"}))
                ws.recv(timeout=5)
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _remote(backend: TlsBackend, **tls: str) -> dict[str, object]:
    return {
        "placement": "remote",
        "url": f"wss://localhost:{backend.port}",
        "token_env": "ECHO_REMOTE_TOKEN",
        "ping_interval": 0.5,
        "reconnect_interval": 0.2,
        **tls,
    }


def _hub_env() -> dict[str, str]:
    return {"ECHO_REMOTE_TOKEN": TOKEN}


async def test_a_remote_backend_is_served_over_wss_with_a_private_ca(tls_backend: TlsBackend, tmp_path: Path) -> None:
    config = {"model_backends": {"far": _remote(tls_backend, tls_ca_file=str(tls_backend.cert))}}
    with hub_process(config, tmp_path, supervise=True, env=_hub_env(), wait_ready=["far"]) as hub:
        answer = await request(
            hub.ws, {"type": "inference_request", "request_id": "r", "model": "far", "data": {"x": 1}}
        )
        assert answer["type"] == "inference_response"
        assert answer["data"]["echo"] == {"x": 1}
        assert "wss://localhost" in hub.log_text()


async def test_a_pinned_certificate_fingerprint_is_enough(tls_backend: TlsBackend, tmp_path: Path) -> None:
    pin = ":".join(tls_backend.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    config = {"model_backends": {"far": _remote(tls_backend, tls_fingerprint=pin)}}
    with hub_process(config, tmp_path, env=_hub_env(), wait_ready=["far"]) as hub:
        answer = await request(hub.ws, {"type": "inference_request", "request_id": "r", "model": "far", "data": {}})
        assert answer["type"] == "inference_response"


@pytest.mark.parametrize(
    "tls",
    [
        {"tls_fingerprint": "00" * 32},  # a certificate other than the pinned one
        {},  # no CA configured: the system's CAs do not know a self-signed certificate
    ],
)
async def test_a_certificate_that_does_not_match_is_never_connected(
    tls_backend: TlsBackend, tmp_path: Path, tls: dict[str, str]
) -> None:
    config = {"model_backends": {"far": {**_remote(tls_backend, **tls), "request_timeout": 1}}}
    with hub_process(config, tmp_path, env=_hub_env()) as hub:
        time.sleep(2.0)
        assert backend_states(hub)["far"] != "ready"
        answer = await request(hub.ws, {"type": "inference_request", "request_id": "r", "model": "far", "data": {}})
        assert answer["type"] == "error"
        assert answer["code"] in ("backend_unavailable", "timeout")
        assert "far: TLS check of wss://localhost" in hub.log_text()


async def test_a_remote_backend_refuses_a_hub_without_its_token(tls_backend: TlsBackend, tmp_path: Path) -> None:
    config = {"model_backends": {"far": _remote(tls_backend, tls_ca_file=str(tls_backend.cert))}}
    with hub_process(config, tmp_path, env={"ECHO_REMOTE_TOKEN": "wrong"}) as hub:
        time.sleep(2.0)
        assert backend_states(hub)["far"] != "ready"


def test_plain_ws_to_a_non_loopback_host_is_refused_at_start(tmp_path: Path) -> None:
    config = {"model_backends": {"far": {"placement": "remote", "url": "ws://192.0.2.10:9000"}}}
    cfg = write_config(tmp_path / "models.yaml", {"hub": {"log_dir": str(tmp_path)}, **config})
    result = subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", "serve", "--config", str(cfg), "--port", str(free_port())],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "model_backends.far" in result.stderr + result.stdout
    assert "plain ws:// is refused" in result.stderr + result.stdout
