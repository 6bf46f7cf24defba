"""The numpy layers the mini-Xception needs, in Keras' NHWC layout and TensorFlow's padding rules.

Every function takes and returns float32 arrays shaped (batch, height, width, channels) and
matches ``tf.keras`` 2.x: "same" padding puts the odd extra pixel after (bottom/right), as
TensorFlow does, and batch normalisation uses the moving statistics (inference mode).
"""

from __future__ import annotations

import numpy as np


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) of one axis: the output has ceil(size / stride) pixels."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pad(x: np.ndarray, kh: int, kw: int, stride: int, padding: str, value: float = 0.0) -> np.ndarray:
    if padding == "valid":
        return x
    top, bottom = same_padding(x.shape[1], kh, stride)
    left, right = same_padding(x.shape[2], kw, stride)
    if top == bottom == left == right == 0:
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _out_size(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def conv2d(x: np.ndarray, kernel: np.ndarray, *, stride: int = 1, padding: str = "valid") -> np.ndarray:
    """A full convolution; ``kernel`` is Keras' (kh, kw, in, out). Done as one matmul over shifted views."""
    kh, kw, cin, cout = kernel.shape
    x = _pad(x, kh, kw, stride, padding)
    oh, ow = _out_size(x.shape[1], kh, stride), _out_size(x.shape[2], kw, stride)
    if kh == kw == 1:
        strided: np.ndarray = x[:, : oh * stride : stride, : ow * stride : stride, :] @ kernel.reshape(cin, cout)
        return strided
    taps = [
        x[:, dy : dy + (oh - 1) * stride + 1 : stride, dx : dx + (ow - 1) * stride + 1 : stride, :]
        for dy in range(kh)
        for dx in range(kw)
    ]
    # Concatenated in (dy, dx, channel) order, which is how the kernel reshapes.
    patches = np.concatenate(taps, axis=-1)
    out: np.ndarray = patches @ kernel.reshape(kh * kw * cin, cout)
    return out


def depthwise_conv2d(x: np.ndarray, kernel: np.ndarray, *, padding: str = "same") -> np.ndarray:
    """A stride-1 depthwise convolution; ``kernel`` is Keras' (kh, kw, channels, 1)."""
    kh, kw, channels, multiplier = kernel.shape
    if multiplier != 1:
        raise ValueError(f"depth_multiplier {multiplier} is not supported")
    x = _pad(x, kh, kw, 1, padding)
    oh, ow = _out_size(x.shape[1], kh, 1), _out_size(x.shape[2], kw, 1)
    out = np.zeros((x.shape[0], oh, ow, channels), dtype=x.dtype)
    for dy in range(kh):
        for dx in range(kw):
            out += x[:, dy : dy + oh, dx : dx + ow, :] * kernel[dy, dx, :, 0]
    return out


def separable_conv2d(x: np.ndarray, depthwise: np.ndarray, pointwise: np.ndarray) -> np.ndarray:
    """Keras' SeparableConv2D (stride 1, "same", no bias): depthwise then a 1x1 convolution."""
    return conv2d(depthwise_conv2d(x, depthwise), pointwise)


def max_pool(x: np.ndarray, *, size: int = 3, stride: int = 2, padding: str = "same") -> np.ndarray:
    """Max pooling; padded pixels never win (they are -inf)."""
    x = _pad(x, size, size, stride, padding, value=-np.inf)
    oh, ow = _out_size(x.shape[1], size, stride), _out_size(x.shape[2], size, stride)
    out = np.full((x.shape[0], oh, ow, x.shape[3]), -np.inf, dtype=x.dtype)
    for dy in range(size):
        for dx in range(size):
            window = x[:, dy : dy + (oh - 1) * stride + 1 : stride, dx : dx + (ow - 1) * stride + 1 : stride, :]
            np.maximum(out, window, out=out)
    return out


def batch_norm(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Inference-mode batch normalisation, with the statistics already folded (see ``fold_batch_norm``)."""
    out: np.ndarray = x * scale + shift
    return out


def fold_batch_norm(
    gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, variance: np.ndarray, epsilon: float
) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) with ``gamma * (x - mean) / sqrt(variance + epsilon) + beta == x * scale + shift``."""
    scale = gamma / np.sqrt(variance + epsilon)
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def relu(x: np.ndarray) -> np.ndarray:
    """max(x, 0) as a new array (the input may feed other layers too)."""
    out: np.ndarray = np.maximum(x, 0)
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, stable for large logits."""
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return probabilities
