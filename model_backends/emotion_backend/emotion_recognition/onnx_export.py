"""A Keras functional CNN read from HDF5 (``KerasModelFile``) written as an ONNX graph, in memory.

The graph is built from the file's own layer list: Conv2D, SeparableConv2D (a grouped
depthwise Conv then a 1x1 Conv), BatchNormalization, Activation, MaxPooling2D, Add and
GlobalAveragePooling2D. Layout is NCHW; TensorFlow's "same" padding (the odd pixel after) is
spelled out as explicit pads, computed from each tensor's known size. Input ``faces``:
(batch, channels, height, width); output ``probabilities``: (batch, classes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .cnn_layers import same_padding
from .keras_model_file import KerasLayer, KerasModelFile

if TYPE_CHECKING:
    import onnx

OPSET = 17
INPUT_NAME = "faces"
OUTPUT_NAME = "probabilities"


@dataclass
class _Graph:
    """Nodes, weights and each tensor's (channels, height, width) while the graph is written."""

    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    shapes: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def weight(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def export_onnx(model: KerasModelFile) -> onnx.ModelProto:
    """The model as a checked ONNX graph (opset 17)."""
    import onnx
    from onnx import TensorProto, helper

    graph = _Graph()
    names: dict[str, str] = {}
    input_shape: tuple[int, int, int] | None = None
    for layer in model.layers:
        if layer.class_name == "InputLayer":
            height, width, channels = layer.config["batch_input_shape"][1:]
            input_shape = (channels, height, width)
            graph.shapes[INPUT_NAME] = input_shape
            names[layer.name] = INPUT_NAME
            continue
        names[layer.name] = _write_layer(graph, layer, [names[i] for i in layer.inputs])
    if input_shape is None:
        raise ValueError(f"{model.path}: no InputLayer")
    last = names[model.layers[-1].name]
    graph.nodes[-1].output[0] = OUTPUT_NAME
    classes = graph.shapes[last][0]
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes,
            model.path.stem,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *input_shape])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", classes])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="emotion_backend.onnx_export",
    )
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def _write_layer(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    writers = {
        "Conv2D": _conv2d,
        "SeparableConv2D": _separable_conv2d,
        "BatchNormalization": _batch_norm,
        "Activation": _activation,
        "MaxPooling2D": _max_pool,
        "Add": _add,
        "GlobalAveragePooling2D": _global_average_pool,
    }
    writer = writers.get(layer.class_name)
    if writer is None:
        raise ValueError(f"layer {layer.name}: {layer.class_name} is not supported by the ONNX export")
    return writer(graph, layer, inputs)


def _pads_and_size(
    shape: tuple[int, int, int], kernel: int, stride: int, padding: str
) -> tuple[list[int], tuple[int, int]]:
    """ONNX pads (top, left, bottom, right) and the output (height, width) of a window op."""
    _, height, width = shape
    if padding == "valid":
        return [0, 0, 0, 0], ((height - kernel) // stride + 1, (width - kernel) // stride + 1)
    top, bottom = same_padding(height, kernel, stride)
    left, right = same_padding(width, kernel, stride)
    return [top, left, bottom, right], (-(-height // stride), -(-width // stride))


def _stride(layer: KerasLayer) -> int:
    sy, sx = layer.config.get("strides", (1, 1))
    if sy != sx:
        raise ValueError(f"layer {layer.name}: unequal strides {sy}x{sx}")
    if tuple(layer.config.get("dilation_rate", (1, 1))) != (1, 1):
        raise ValueError(f"layer {layer.name}: dilation is not supported")
    return int(sy)


def _conv(graph: _Graph, name: str, x: str, kernel: np.ndarray, bias: np.ndarray | None, **conv: Any) -> str:
    """One ONNX Conv; ``kernel`` already in ONNX's (out, in/group, kh, kw)."""
    inputs = [x, graph.weight(f"{name}.W", kernel)]
    if bias is not None:
        inputs.append(graph.weight(f"{name}.B", bias))
    return graph.node("Conv", inputs, name, **conv)


def _conv2d(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    kernel = layer.weights["kernel"]  # (kh, kw, in, out)
    kh, kw, _, out = kernel.shape
    if kh != kw:
        raise ValueError(f"layer {layer.name}: non-square kernel {kh}x{kw}")
    stride = _stride(layer)
    pads, size = _pads_and_size(graph.shapes[inputs[0]], kh, stride, layer.config["padding"])
    y = _conv(
        graph,
        layer.name,
        inputs[0],
        kernel.transpose(3, 2, 0, 1),
        layer.weights.get("bias"),
        kernel_shape=[kh, kw],
        strides=[stride, stride],
        pads=pads,
    )
    graph.shapes[y] = (out, *size)
    return _activation_of(graph, layer, y)


def _separable_conv2d(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    depthwise, pointwise = layer.weights["depthwise_kernel"], layer.weights["pointwise_kernel"]
    kh, kw, channels, multiplier = depthwise.shape
    if multiplier != 1 or kh != kw:
        raise ValueError(f"layer {layer.name}: only square kernels with depth_multiplier 1 are supported")
    stride = _stride(layer)
    pads, size = _pads_and_size(graph.shapes[inputs[0]], kh, stride, layer.config["padding"])
    mid = _conv(
        graph,
        f"{layer.name}.depthwise",
        inputs[0],
        depthwise.transpose(2, 3, 0, 1),
        None,
        kernel_shape=[kh, kw],
        strides=[stride, stride],
        pads=pads,
        group=channels,
    )
    y = _conv(graph, layer.name, mid, pointwise.transpose(3, 2, 0, 1), layer.weights.get("bias"), kernel_shape=[1, 1])
    graph.shapes[y] = (pointwise.shape[3], *size)
    return _activation_of(graph, layer, y)


def _batch_norm(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    w = layer.weights
    channels = w["moving_mean"].shape
    params = [
        graph.weight(f"{layer.name}.{key}", value)
        for key, value in (
            ("gamma", w.get("gamma", np.ones(channels, np.float32))),
            ("beta", w.get("beta", np.zeros(channels, np.float32))),
            ("mean", w["moving_mean"]),
            ("var", w["moving_variance"]),
        )
    ]
    y = graph.node("BatchNormalization", [inputs[0], *params], layer.name, epsilon=float(layer.config["epsilon"]))
    graph.shapes[y] = graph.shapes[inputs[0]]
    return y


def _activation(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    return _apply_activation(graph, layer.name, layer.config["activation"], inputs[0])


def _activation_of(graph: _Graph, layer: KerasLayer, x: str) -> str:
    activation = layer.config.get("activation", "linear")
    return x if activation == "linear" else _apply_activation(graph, f"{layer.name}.{activation}", activation, x)


def _apply_activation(graph: _Graph, name: str, activation: str, x: str) -> str:
    ops = {"relu": ("Relu", {}), "softmax": ("Softmax", {"axis": -1})}
    if activation == "linear":
        y = graph.node("Identity", [x], name)
    elif activation in ops:
        op, attrs = ops[activation]
        y = graph.node(op, [x], name, **attrs)
    else:
        raise ValueError(f"layer {name}: activation {activation!r} is not supported")
    graph.shapes[y] = graph.shapes[x]
    return y


def _max_pool(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    size, size_x = layer.config["pool_size"]
    if size != size_x:
        raise ValueError(f"layer {layer.name}: non-square pooling")
    stride = _stride(layer)
    shape = graph.shapes[inputs[0]]
    pads, out = _pads_and_size(shape, size, stride, layer.config["padding"])
    y = graph.node("MaxPool", inputs[:1], layer.name, kernel_shape=[size, size], strides=[stride, stride], pads=pads)
    graph.shapes[y] = (shape[0], *out)
    return y


def _add(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    y = graph.node("Sum", inputs, layer.name)
    graph.shapes[y] = graph.shapes[inputs[0]]
    return y


def _global_average_pool(graph: _Graph, layer: KerasLayer, inputs: list[str]) -> str:
    pooled = graph.node("GlobalAveragePool", inputs[:1], f"{layer.name}.pool")
    y = graph.node("Flatten", [pooled], layer.name, axis=1)
    graph.shapes[y] = (graph.shapes[inputs[0]][0], 1, 1)
    return y
