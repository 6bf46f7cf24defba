"""Artifact flags on synthetic recordings: a flat, a clipped and a mains-contaminated channel are caught."""

from __future__ import annotations

import numpy as np
from scipy import signal as sp_signal

from model_backends.eeg_backend.eeg_drowsiness.artifacts import ArtifactThresholds, detect_artifacts
from model_backends.eeg_backend.eeg_drowsiness.synthetic_eeg import ALERT, sine, synthetic_eeg

SFREQ = 256.0


def _psd(signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    freqs, psd = sp_signal.welch(signal, SFREQ, nperseg=512)
    return psd, freqs


def test_flat_clipped_and_line_noise_channels_are_flagged_and_a_clean_one_is_not() -> None:
    clean = synthetic_eeg(8.0, SFREQ, 1, ALERT, seed=1)
    flat = np.full_like(clean, 12.0)  # a disconnected electrode: a constant offset
    clipped = np.clip(synthetic_eeg(8.0, SFREQ, 1, ALERT, background_uv=30, seed=2), -25, 25)
    mains = synthetic_eeg(8.0, SFREQ, 1, ALERT, seed=3) + sine(8.0, SFREQ, 50.0, 40.0)
    signal = np.vstack([clean, flat, clipped, mains])

    flags = detect_artifacts(signal, *_psd(signal), (50.0, 60.0), ArtifactThresholds())

    assert [(f.flat, f.clipped, f.line_noise) for f in flags] == [
        (False, False, False),
        (True, False, False),
        (False, True, False),
        (False, False, True),
    ]
    assert [f.bad for f in flags] == [False, True, True, False]
    assert flags[2].clipped_fraction > 0.05
    assert flags[3].line_noise_ratio > 10 * flags[0].line_noise_ratio


def test_line_noise_is_only_looked_for_at_the_given_mains_frequency() -> None:
    mains60 = synthetic_eeg(8.0, SFREQ, 1, ALERT, seed=4) + sine(8.0, SFREQ, 60.0, 40.0)
    assert not detect_artifacts(mains60, *_psd(mains60), (50.0,), ArtifactThresholds())[0].line_noise
    assert detect_artifacts(mains60, *_psd(mains60), (60.0,), ArtifactThresholds())[0].line_noise


def test_amplifier_range_flags_samples_beyond_it_even_when_they_differ() -> None:
    signal = synthetic_eeg(8.0, SFREQ, 1, ALERT, background_uv=60, seed=5)
    share_beyond = float(np.mean(np.abs(signal) >= 100.0))
    assert 0.02 < share_beyond < 0.5
    assert not detect_artifacts(signal, *_psd(signal), (), ArtifactThresholds())[0].clipped
    assert detect_artifacts(signal, *_psd(signal), (), ArtifactThresholds(clip_uv=100.0))[0].clipped
