"""Notch + band-pass filtering: a 50 Hz mains line is removed, the EEG bands are kept."""

from __future__ import annotations

import numpy as np
import pytest

from model_backends.eeg_backend.eeg_drowsiness.band_power import BANDS, band_power
from model_backends.eeg_backend.eeg_drowsiness.synthetic_eeg import ALERT, sine, synthetic_eeg

pytest.importorskip("mne", reason="filter design uses mne.filter; runs in the EEG backend's venv")

from model_backends.eeg_backend.eeg_drowsiness.band_power import welch_psd
from model_backends.eeg_backend.eeg_drowsiness.filtering import FilterDesigns, clean, design_filter

SFREQ = 256.0


def _power(signal: np.ndarray, low: float, high: float) -> np.ndarray:
    return band_power(*welch_psd(signal, SFREQ), low, high)


def test_filtering_removes_a_50_hz_line_and_keeps_the_eeg_bands() -> None:
    eeg = synthetic_eeg(4.0, SFREQ, 2, ALERT, seed=7)
    contaminated = eeg + sine(4.0, SFREQ, 50.0, 50.0)
    filtered, design = clean(contaminated, SFREQ, (50.0,))

    before, after = _power(contaminated, 48.0, 52.0), _power(filtered, 48.0, 52.0)
    assert (after < before / 1000).all(), (before, after)
    assert design.notch_hz == (50.0,)
    for low, high in (BANDS["theta"], BANDS["alpha"], BANDS["beta"]):
        np.testing.assert_allclose(_power(filtered, low, high), _power(eeg, low, high), rtol=0.1)


def test_filtering_removes_slow_drift_below_the_band() -> None:
    eeg = synthetic_eeg(4.0, SFREQ, 1, ALERT, seed=8)
    drifting = eeg + np.linspace(0, 400, eeg.shape[1])
    filtered, _ = clean(drifting, SFREQ, ())
    assert np.abs(filtered).max() < 5 * np.abs(eeg).max()


def test_notches_above_nyquist_are_skipped() -> None:
    assert design_filter(100.0, (50.0, 60.0)).notch_hz == ()
    assert design_filter(100.0, (50.0, 60.0)).bandpass_hz == (0.5, 45.0)
    assert design_filter(256.0, (50.0, 60.0)).notch_hz == (50.0, 60.0)


def test_designs_are_reused_per_sampling_rate_and_mains() -> None:
    designs = FilterDesigns()
    assert designs.get(256.0, (50.0,)) is designs.get(256.0, (50.0,))
    assert designs.get(256.0, (50.0,)) is not designs.get(250.0, (50.0,))
