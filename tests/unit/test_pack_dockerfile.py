"""The Dockerfile for a bundle: two stages, offline install, non-root, read-only model, health check."""

from __future__ import annotations

from main_backend.packing.dockerfile import copied_sources, dockerfile
from main_backend.packing.manifest import ModelInfo
from tests.unit.test_pack_manifest import make_manifest


def test_dockerfile_installs_offline_and_runs_unprivileged() -> None:
    manifest = make_manifest(nodeps_packages=["fer==25.10.3"], model=ModelInfo(kind="file", path="model/m.hdf5"))

    text = dockerfile(manifest)
    lines = text.splitlines()

    assert [line.split()[1] for line in lines if line.startswith("FROM")] == ["python:3.11-slim", "python:3.11-slim"]
    assert next(line for line in lines if line.startswith("FROM")).endswith("AS builder")
    assert "pip install --no-index --find-links /bundle/wheels -r /bundle/wheels/requirements.lock" in text
    assert "--no-deps -r /bundle/wheels/requirements-nodeps.lock" in text
    assert "USER 10001" in lines
    assert "COPY --chown=root:root --chmod=0555 model/ /models/" in lines
    assert "--model-path /models/m.hdf5" in text
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert "EXPOSE 8772" in lines


def test_dockerfile_without_model_or_nodeps_copies_neither() -> None:
    text = dockerfile(make_manifest())

    assert "model/" not in text
    assert "--no-deps" not in text
    assert "--model-path" not in text


def test_copied_sources_are_the_build_context_paths() -> None:
    text = dockerfile(make_manifest(model=ModelInfo(kind="file", path="model/m.hdf5")))

    assert copied_sources(text) == ["wheels", "backend/emotion_backend", "health_check.py", "model"]


def test_the_build_comment_names_the_bundle_file_that_was_written() -> None:
    text = dockerfile(make_manifest(), "fatigue-arm64.bundle")
    assert "tar -xf fatigue-arm64.bundle -C ctx" in text
    assert ".bundle" not in text.replace("fatigue-arm64.bundle", "")
