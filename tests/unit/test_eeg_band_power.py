"""Band powers and drowsiness indices on synthetic recordings: more alpha/theta scores higher than more beta."""

from __future__ import annotations

import numpy as np
import pytest

from model_backends.eeg_backend.eeg_drowsiness.band_power import (
    BAND_NAMES,
    INDEX_NAMES,
    band_power,
    band_powers,
    drowsiness_indices,
    relative_powers,
)
from model_backends.eeg_backend.eeg_drowsiness.synthetic_eeg import ALERT, DROWSY, Rhythm, synthetic_eeg

SFREQ = 256.0


def _spectrum(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pytest.importorskip("mne", reason="Welch PSD uses mne; runs in the EEG backend's venv")
    from model_backends.eeg_backend.eeg_drowsiness.band_power import welch_psd

    return welch_psd(signal, SFREQ, 0.5, 45.0)


def test_band_power_integrates_the_psd_over_half_open_bands() -> None:
    freqs = np.arange(0, 50.5, 0.5)
    psd = np.ones((2, freqs.size))
    psd[1] *= 3
    assert band_power(psd, freqs, 4.0, 8.0).tolist() == [4.0, 12.0]
    assert band_powers(psd, freqs).shape == (2, len(BAND_NAMES))


def test_relative_powers_sum_to_one_and_a_silent_channel_stays_zero() -> None:
    powers = np.array([[1.0, 2.0, 3.0, 4.0, 0.0], [0.0] * 5])
    rel = relative_powers(powers)
    assert rel[0].sum() == pytest.approx(1.0)
    assert rel[1].tolist() == [0.0] * 5


def test_indices_are_the_literature_ratios() -> None:
    delta, theta, alpha, beta, gamma = 1.0, 2.0, 3.0, 4.0, 5.0
    indices = dict(zip(INDEX_NAMES, drowsiness_indices(np.array([[delta, theta, alpha, beta, gamma]]))[0], strict=True))
    assert indices == {"theta_alpha_over_beta": 1.25, "alpha_over_beta": 0.75, "theta_over_beta": 0.5}
    assert drowsiness_indices(np.zeros((1, 5))).tolist() == [[0.0, 0.0, 0.0]]


def test_more_alpha_and_theta_gives_a_higher_drowsiness_index_than_more_beta() -> None:
    alert = synthetic_eeg(8.0, SFREQ, 4, ALERT, seed=11)
    drowsy = synthetic_eeg(8.0, SFREQ, 4, DROWSY, seed=12)
    alert_idx = drowsiness_indices(band_powers(*_spectrum(alert)))
    drowsy_idx = drowsiness_indices(band_powers(*_spectrum(drowsy)))
    # every channel, every index
    assert (drowsy_idx > 2 * alert_idx).all(), (alert_idx, drowsy_idx)


def test_a_rhythm_lands_in_its_band() -> None:
    signal = synthetic_eeg(8.0, SFREQ, 1, (Rhythm(10.0, 30.0),), background_uv=2.0, seed=3)
    rel = relative_powers(band_powers(*_spectrum(signal)))[0]
    assert BAND_NAMES[int(rel.argmax())] == "alpha"
    assert rel[BAND_NAMES.index("alpha")] > 0.8
