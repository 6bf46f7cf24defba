"""One window end to end in-process: powers, indices and artifacts, with bad channels left out of the mean."""

from __future__ import annotations

import numpy as np
import pytest

from model_backends.base.errors import BadRequestError
from model_backends.eeg_backend.eeg_drowsiness.signal_input import parse_window
from model_backends.eeg_backend.eeg_drowsiness.sleep_staging import SleepStager
from model_backends.eeg_backend.eeg_drowsiness.stream_monitor import (
    StagingSettings,
    StreamMonitor,
    pick_staging_channel,
)
from model_backends.eeg_backend.eeg_drowsiness.stream_registry import StreamRegistry
from model_backends.eeg_backend.eeg_drowsiness.synthetic_eeg import ALERT, DROWSY, synthetic_eeg

pytest.importorskip("mne", reason="filters and Welch use mne; runs in the EEG backend's venv")

from model_backends.eeg_backend.eeg_drowsiness.window_analysis import analyze_window

SFREQ = 256


def _window(signal: np.ndarray, names: list[str]) -> dict[str, object]:
    return {"eeg": signal.tolist(), "sfreq": SFREQ, "ch_names": names}


def test_bad_channels_are_flagged_and_left_out_of_the_mean_indices() -> None:
    good = synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=1)
    flat = np.zeros((1, good.shape[1]))
    clipped = np.clip(synthetic_eeg(4.0, SFREQ, 1, DROWSY, background_uv=40, seed=2), -30, 30)
    analysis = analyze_window(parse_window(_window(np.vstack([good, flat, clipped]), ["Fz", "Cz", "flat", "clip"])))
    body = analysis.to_dict()

    assert body["bad_channels"] == ["flat", "clip"]
    assert body["artifacts"]["flat"]["flat"] is True
    assert body["artifacts"]["clip"]["clipped"] is True
    expected = analysis.indices[:2].mean(axis=0)
    assert body["mean_indices"]["theta_alpha_over_beta"] == pytest.approx(expected[0])
    assert sum(body["relative_power"]["Fz"].values()) == pytest.approx(1.0, abs=1e-4)
    assert body["filter"] == {"bandpass_hz": [0.5, 45.0], "notch_hz": [50.0, 60.0], "mode": "zero_phase"}


def test_mean_indices_are_none_when_every_channel_is_bad() -> None:
    analysis = analyze_window(parse_window(_window(np.zeros((2, 1024)), ["a", "b"])))
    assert analysis.mean_indices() is None


def test_stream_monitor_collects_signal_until_staging_has_five_minutes() -> None:
    monitor = StreamMonitor(StreamRegistry(), SleepStager(), StagingSettings(min_seconds=60.0, buffer_seconds=90.0))
    signal = synthetic_eeg(30.0, SFREQ, 2, ALERT, seed=3)
    window = parse_window(_window(signal, ["Fz", "C4-M1"]))
    analysis = analyze_window(window)
    first = monitor.observe("car", window, analysis)
    assert first["staging"] == {"status": "collecting", "channel": "C4-M1", "buffered_s": 30.0, "needed_s": 60.0}
    monitor.observe("car", window, analysis)
    third = monitor.observe("car", window, analysis)
    # enough signal, but this stager was never loaded: it says so instead of guessing
    assert third["staging"]["status"] == "unloaded"
    assert third["staging"]["buffered_s"] == 90.0
    assert third["signal_seconds"] == 90.0
    assert third["trend"]["windows"] == 3


def test_stream_monitor_refuses_an_unknown_staging_channel() -> None:
    monitor = StreamMonitor(StreamRegistry(), SleepStager())
    window = parse_window(_window(synthetic_eeg(4.0, SFREQ, 1, ALERT, seed=4), ["Fz"]))
    with pytest.raises(BadRequestError, match="staging_channel 'C4'"):
        monitor.observe("car", window, analyze_window(window), staging_channel="C4")


def test_staging_prefers_a_central_good_channel() -> None:
    assert pick_staging_channel(("Fp1", "Fz", "C4"), [0, 1, 2]) == "C4"
    assert pick_staging_channel(("Fp1", "Fz", "C4"), [0, 1]) == "Fz"
    assert pick_staging_channel(("x", "y"), [1]) == "y"
    assert pick_staging_channel(("x", "y"), []) == "x"
