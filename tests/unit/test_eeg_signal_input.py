"""EEG request parsing: JSON lists and binary float32 become a window; bad input gets a clear typed error."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from model_backends.base.errors import BadRequestError, TooLargeError
from model_backends.eeg_backend.eeg_drowsiness.signal_input import InputLimits, parse_window, unit_warnings


def _data(n_channels: int = 2, n_samples: int = 512, **extra: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    return {"eeg": (rng.standard_normal((n_channels, n_samples)) * 20).tolist(), "sfreq": 256, **extra}


def test_parse_window_reads_json_lists_as_float64_microvolts() -> None:
    window = parse_window(_data(ch_names=["C4", "Fz"]))
    assert window.signal.shape == (2, 512)
    assert window.signal.dtype == np.float64
    assert window.ch_names == ("C4", "Fz")
    assert window.duration_s == 2.0
    assert window.line_freqs == (50.0, 60.0)


def test_parse_window_reads_binary_float32_with_its_shape() -> None:
    signal = np.arange(2 * 600, dtype=np.float32).reshape(2, 600) / 10
    window = parse_window({"eeg": signal.tobytes(), "shape": [2, 600], "sfreq": 250})
    np.testing.assert_array_equal(window.signal, signal.astype(np.float64))
    assert window.ch_names == ("ch0", "ch1")


def test_parse_window_takes_line_freq_as_number_list_or_empty() -> None:
    assert parse_window(_data(line_freq=60)).line_freqs == (60.0,)
    assert parse_window(_data(line_freq=[60, 50])).line_freqs == (50.0, 60.0)
    assert parse_window(_data(line_freq=[])).line_freqs == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"sfreq": 256}, "data.eeg is required"),
        ({"eeg": [[1.0] * 512]}, "data.sfreq is required"),
        ({"eeg": [[1.0] * 512], "sfreq": "fast"}, "data.sfreq must be a number"),
        ({"eeg": [[1.0] * 512], "sfreq": 20}, "outside the supported range"),
        ({"eeg": [1.0] * 512, "sfreq": 256}, "2-D list"),
        ({"eeg": "1,2,3", "sfreq": 256}, "not str"),
        ({"eeg": [[1.0] * 512, [1.0] * 500], "sfreq": 256}, "same number of samples"),
        ({"eeg": [["a"] * 512], "sfreq": 256}, "only numbers"),
        ({"eeg": [[None] * 512], "sfreq": 256}, "only numbers"),
        ({"eeg": [[[1.0]] * 512], "sfreq": 256}, "2-D list"),
        ({"eeg": [[1.0] * 100], "sfreq": 256}, "at least 2 s"),
        ({"eeg": [[1.0] * 512], "sfreq": 256, "ch_names": ["a", "b"]}, "2 names for 1 channels"),
        ({"eeg": [[1.0] * 512] * 2, "sfreq": 256, "ch_names": ["a", "a"]}, "unique"),
        ({"eeg": [[1.0] * 512], "sfreq": 256, "line_freq": 55}, "line_freq"),
        ({"eeg": [[1e9] * 512], "sfreq": 256}, "microvolts"),
        ({"eeg": b"\x00" * 12, "shape": [1, 512], "sfreq": 256}, "needs 2048 bytes"),
        ({"eeg": b"\x00" * 2048, "sfreq": 256}, "data.shape"),
        ({"eeg": b"\x00" * 2048, "shape": [1, 512], "dtype": "int16", "sfreq": 256}, "float32"),
    ],
)
def test_parse_window_refuses_malformed_input_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequestError, match=message):
        parse_window(data)


def test_parse_window_refuses_nan_and_infinity() -> None:
    signal = np.zeros((2, 512), dtype=np.float32)
    signal[1, 7] = np.nan
    with pytest.raises(BadRequestError, match=r"NaN or infinite values \(channel indices \[1\]\)"):
        parse_window({"eeg": signal.tobytes(), "shape": [2, 512], "sfreq": 256})


@pytest.mark.parametrize(
    ("shape", "message"),
    [((65, 512), "65 channels; the limit is 64"), ((1, 70_000), "70000 samples"), ((32, 40_000), "values")],
)
def test_parse_window_refuses_too_large_input_before_decoding(shape: tuple[int, int], message: str) -> None:
    payload = b"\x00" * 16  # never read: the shape alone is over the limit
    with pytest.raises(TooLargeError, match=message):
        parse_window({"eeg": payload, "shape": list(shape), "sfreq": 256})


def test_limits_are_configurable() -> None:
    with pytest.raises(TooLargeError):
        parse_window(_data(n_channels=3), InputLimits(max_channels=2))


def test_unit_warnings_notice_volts_sent_as_microvolts() -> None:
    window = parse_window({"eeg": (np.ones((1, 512)) * 2e-5).tolist(), "sfreq": 256})
    assert "volts" in unit_warnings(window)[0]
    assert unit_warnings(parse_window(_data())) == []
