"""Turn a request's ``data`` into a validated EEG window, or raise a typed error saying what is wrong.

Two forms are accepted:

* JSON: ``{"eeg": [[...], ...], "sfreq": 256, "ch_names": [...]}`` (channels x samples, microvolts);
* binary envelope: the header names ``"binary_field": "eeg"`` and carries ``data.shape``
  ``[channels, samples]``; ``data["eeg"]`` arrives as raw little-endian float32 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_backends.base.errors import BadRequestError, TooLargeError

DEFAULT_LINE_FREQS: tuple[float, ...] = (50.0, 60.0)
_FLOAT32_BYTES = 4


@dataclass(frozen=True)
class InputLimits:
    """What one request may carry; anything beyond is refused before the heavy work starts."""

    max_channels: int = 64
    max_samples: int = 65_536
    max_values: int = 1_048_576
    min_seconds: float = 2.0
    min_sfreq: float = 100.0
    max_sfreq: float = 4096.0
    max_abs_uv: float = 100_000.0
    max_name_length: int = 64


@dataclass(frozen=True)
class EEGWindow:
    """One validated chunk of EEG: float64 microvolts, channels x samples."""

    signal: np.ndarray
    sfreq: float
    ch_names: tuple[str, ...]
    line_freqs: tuple[float, ...]

    @property
    def n_channels(self) -> int:
        return int(self.signal.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.signal.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sfreq


def parse_window(data: dict[str, Any], limits: InputLimits | None = None) -> EEGWindow:
    """Validate ``data`` (JSON lists or binary float32) into an :class:`EEGWindow`.

    Raises ``BadRequestError`` for missing fields, wrong types or shapes, non-finite values or
    an implausible sampling rate, and ``TooLargeError`` for too many channels, samples or values.
    """
    limits = limits or InputLimits()
    sfreq = _sfreq(data.get("sfreq"), limits)
    value = data.get("eeg")
    if value is None:
        raise BadRequestError("data.eeg is required: a list of channels, each a list of samples in microvolts")
    if isinstance(value, bytes | bytearray | memoryview):
        signal = _signal_from_bytes(bytes(value), data.get("shape"), data.get("dtype"), limits)
    else:
        signal = _signal_from_lists(value, limits)
    _check_duration(signal, sfreq, limits)
    _check_values(signal, limits)
    names = _channel_names(data.get("ch_names"), signal.shape[0], limits)
    return EEGWindow(signal=signal, sfreq=sfreq, ch_names=names, line_freqs=_line_freqs(data.get("line_freq")))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sfreq(value: Any, limits: InputLimits) -> float:
    if value is None:
        raise BadRequestError("data.sfreq is required: the sampling rate in Hz, e.g. 256")
    if not _is_number(value) or not math.isfinite(value):
        raise BadRequestError(f"data.sfreq must be a number of Hz, not {value!r}")
    if not limits.min_sfreq <= value <= limits.max_sfreq:
        raise BadRequestError(
            f"data.sfreq={value} is outside the supported range {limits.min_sfreq:g}-{limits.max_sfreq:g} Hz"
        )
    return float(value)


def _check_shape(n_channels: int, n_samples: int, limits: InputLimits) -> None:
    if n_channels < 1 or n_samples < 1:
        raise BadRequestError(f"data.eeg must have at least one channel and one sample, got {n_channels}x{n_samples}")
    if n_channels > limits.max_channels:
        raise TooLargeError(f"data.eeg has {n_channels} channels; the limit is {limits.max_channels}")
    if n_samples > limits.max_samples:
        raise TooLargeError(f"data.eeg has {n_samples} samples per channel; the limit is {limits.max_samples}")
    if n_channels * n_samples > limits.max_values:
        raise TooLargeError(f"data.eeg has {n_channels * n_samples} values; the limit is {limits.max_values}")


def _signal_from_bytes(raw: bytes, shape: Any, dtype: Any, limits: InputLimits) -> np.ndarray:
    if dtype not in (None, "float32", "<f4"):
        raise BadRequestError(f"binary EEG must be little-endian float32 (data.dtype 'float32'), not {dtype!r}")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(n, int) and n >= 0 for n in shape)):
        raise BadRequestError("binary EEG needs data.shape = [channels, samples] (two non-negative integers)")
    n_channels, n_samples = shape
    _check_shape(n_channels, n_samples, limits)
    expected = n_channels * n_samples * _FLOAT32_BYTES
    if len(raw) != expected:
        raise BadRequestError(
            f"binary EEG has {len(raw)} bytes but data.shape {shape} of float32 needs {expected} bytes"
        )
    return np.frombuffer(raw, dtype="<f4").reshape(n_channels, n_samples).astype(np.float64)


def _signal_from_lists(value: Any, limits: InputLimits) -> np.ndarray:
    if not isinstance(value, list) or not value:
        raise BadRequestError(
            f"data.eeg must be a non-empty list of channels (lists of numbers), not {type(value).__name__}"
        )
    if not all(isinstance(row, list) for row in value):
        raise BadRequestError("data.eeg must be a 2-D list: channels x samples (each channel a list of numbers)")
    lengths = {len(row) for row in value}
    if len(lengths) != 1:
        raise BadRequestError(f"every channel of data.eeg must have the same number of samples, got {sorted(lengths)}")
    _check_shape(len(value), lengths.pop(), limits)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise BadRequestError(f"data.eeg must be a 2-D list of numbers: {exc}") from exc
    if arr.ndim != 2:
        raise BadRequestError(f"data.eeg must be a 2-D list of numbers (channels x samples), got {arr.ndim} dimensions")
    if arr.dtype.kind not in "iuf":
        raise BadRequestError("data.eeg must contain only numbers (found strings, booleans, nulls or objects)")
    return arr.astype(np.float64)


def _check_duration(signal: np.ndarray, sfreq: float, limits: InputLimits) -> None:
    needed = math.ceil(limits.min_seconds * sfreq)
    if signal.shape[1] < needed:
        raise BadRequestError(
            f"data.eeg has {signal.shape[1]} samples ({signal.shape[1] / sfreq:.2f} s); "
            f"at least {limits.min_seconds:g} s ({needed} samples at {sfreq:g} Hz) are needed"
        )


def _check_values(signal: np.ndarray, limits: InputLimits) -> None:
    finite = np.isfinite(signal)
    if not finite.all():
        bad = sorted({int(c) for c in np.nonzero(~finite)[0]})
        raise BadRequestError(f"data.eeg contains NaN or infinite values (channel indices {bad[:8]})")
    peak = float(np.abs(signal).max())
    if peak > limits.max_abs_uv:
        raise BadRequestError(
            f"data.eeg has a value of {peak:.3g} uV; values must be microvolts within +-{limits.max_abs_uv:g}"
        )


def _channel_names(value: Any, n_channels: int, limits: InputLimits) -> tuple[str, ...]:
    if value is None:
        return tuple(f"ch{i}" for i in range(n_channels))
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise BadRequestError("data.ch_names must be a list of non-empty strings")
    if len(value) != n_channels:
        raise BadRequestError(f"data.ch_names has {len(value)} names for {n_channels} channels")
    if len(set(value)) != len(value):
        raise BadRequestError("data.ch_names must be unique")
    if any(len(n) > limits.max_name_length for n in value):
        raise BadRequestError(f"data.ch_names entries must be at most {limits.max_name_length} characters")
    return tuple(value)


def _line_freqs(value: Any) -> tuple[float, ...]:
    """Mains frequencies to measure and notch: 50 and/or 60 Hz; both when not given; none for ``[]``."""
    if value is None:
        return DEFAULT_LINE_FREQS
    items = value if isinstance(value, list) else [value]
    if not all(_is_number(f) and f in (50, 60) for f in items):
        raise BadRequestError(f"data.line_freq must be 50, 60, or a list of them, not {value!r}")
    return tuple(sorted({float(f) for f in items}))


def unit_warnings(window: EEGWindow) -> list[str]:
    """Hints about likely unit mistakes (the signal is expected in microvolts)."""
    peak = float(np.abs(window.signal).max())
    if 0 < peak < 0.01:
        return [f"the largest value is {peak:.3g}: that looks like volts, but data.eeg is read as microvolts"]
    return []
