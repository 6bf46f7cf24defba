"""The manifest: checks name every bad file; wheel names give package versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from main_backend.packing.manifest import (
    BackendInfo,
    BundleError,
    EngineInfo,
    FileDigest,
    Manifest,
    ModelInfo,
    TargetInfo,
    digest_of,
    verify_files,
)
from main_backend.packing.wheels import Target, pins, wheel_name_version


def make_manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = {
        "created": "2026-01-01T00:00:00Z",
        "backend": BackendInfo(name="emotion", version="0.1.0", folder="emotion_backend", port=8772),
        "target": TargetInfo(python="3.11", platform="linux-x86_64"),
        "packages": {"numpy": "2.4.6"},
        "model": ModelInfo(),
        "hardware": {},
        "engine": EngineInfo(name="transformers", reason="vllm is not installed"),
        "files": {"a": digest_of(b"a")},
    }
    fields.update(overrides)
    return Manifest.model_validate(fields)


def test_verify_names_changed_missing_and_unlisted_files() -> None:
    expected = {
        "same": digest_of(b"x"),
        "flipped": digest_of(b"abc"),
        "short": digest_of(b"abcd"),
        "gone": digest_of(b""),
    }
    seen = {"same": digest_of(b"x"), "flipped": digest_of(b"abd"), "short": digest_of(b"ab"), "extra": digest_of(b"")}

    problems = verify_files(expected, seen)

    assert problems == [
        "flipped: sha256 " + digest_of(b"abd").sha256[:16] + "... does not match the manifest",
        "gone: missing from the bundle",
        "short: size 2 bytes, the manifest says 4",
        "extra: not listed in the manifest",
    ]


def test_verify_accepts_an_intact_bundle() -> None:
    files = {"a": digest_of(b"a"), "b": digest_of(b"b")}

    assert verify_files(files, dict(files)) == []


def test_manifest_round_trips_and_refuses_other_formats() -> None:
    manifest = make_manifest()

    assert Manifest.from_bytes(manifest.to_bytes()) == manifest
    with pytest.raises(BundleError, match="format 99"):
        Manifest.from_bytes(make_manifest(format=99).to_bytes())
    with pytest.raises(BundleError, match=r"manifest\.json is damaged"):
        Manifest.from_bytes(manifest.to_bytes()[:-20])


def test_file_digest_is_sha256_and_size() -> None:
    assert digest_of(b"hello") == FileDigest(
        sha256="2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824", size=5
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl", ("numpy", "2.4.6")),
        (
            "opencv_python_headless-4.14.0.94-cp37-abi3-manylinux_2_28_x86_64.whl",
            ("opencv-python-headless", "4.14.0.94"),
        ),
        ("hub_backend_base-0.1.0-py3-none-any.whl", ("hub-backend-base", "0.1.0")),
        ("torch-2.13.0+cpu-1build-cp311-cp311-linux_x86_64.whl", ("torch", "2.13.0+cpu")),
    ],
)
def test_wheel_file_names_give_name_and_version(name: str, expected: tuple[str, str]) -> None:
    assert wheel_name_version(Path(name)) == expected


def test_pins_lock_every_wheel_exactly() -> None:
    wheels = [Path("numpy-2.4.6-cp311-cp311-linux_x86_64.whl"), Path("fer-25.10.3-py3-none-any.whl")]

    assert pins(wheels) == "fer==25.10.3\nnumpy==2.4.6\n"


def test_a_different_target_downloads_binary_wheels_only() -> None:
    assert Target("3.11", "linux-x86_64").pip_options() == []
    assert Target("3.12", "manylinux_2_28_aarch64,manylinux2014_aarch64", cross=True).pip_options() == [
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_28_aarch64",
        "--platform",
        "manylinux2014_aarch64",
        "--python-version",
        "3.12",
    ]
