"""Synthetic EEG: a 1/f ("pink") background plus narrow-band rhythms, for warm-up, tests and benchmarks.

The spectrum is shaped in the frequency domain with random phases, so every rhythm is a
band of noise (bursting, like a real alpha rhythm) rather than a pure sine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Rhythm:
    """A narrow-band oscillation: centre frequency, RMS amplitude in microvolts, Gaussian width."""

    freq_hz: float
    amplitude_uv: float
    width_hz: float = 1.0


#: Eyes-open, alert: little alpha, plenty of beta.
ALERT: tuple[Rhythm, ...] = (Rhythm(10.0, 4.0), Rhythm(20.0, 6.0, 4.0))
#: Drowsy: theta and alpha dominate, beta fades (the pattern the spectral indices look for).
DROWSY: tuple[Rhythm, ...] = (Rhythm(6.0, 9.0, 1.5), Rhythm(10.0, 8.0), Rhythm(20.0, 3.0, 4.0))


def shaped_noise(
    n_channels: int, n_samples: int, sfreq: float, weights_of: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise whose amplitude spectrum is ``weights_of`` (one weight per rFFT bin), unit std."""
    n_bins = n_samples // 2 + 1
    spectrum = rng.standard_normal((n_channels, n_bins)) + 1j * rng.standard_normal((n_channels, n_bins))
    spectrum *= weights_of
    spectrum[:, 0] = 0.0
    noise = np.fft.irfft(spectrum, n_samples, axis=-1)
    std = noise.std(axis=-1, keepdims=True)
    return np.asarray(noise / np.where(std > 0, std, 1.0))


def synthetic_eeg(
    seconds: float,
    sfreq: float,
    n_channels: int = 1,
    rhythms: Sequence[Rhythm] = (),
    *,
    background_uv: float = 10.0,
    exponent: float = 1.0,
    seed: int | None = None,
) -> np.ndarray:
    """Channels x samples of EEG-like signal in microvolts: 1/f^exponent background plus ``rhythms``."""
    rng = np.random.default_rng(seed)
    n_samples = round(seconds * sfreq)
    freqs = np.fft.rfftfreq(n_samples, 1.0 / sfreq)
    pink = np.zeros_like(freqs)
    pink[1:] = freqs[1:] ** (-exponent / 2)
    signal = background_uv * shaped_noise(n_channels, n_samples, sfreq, pink, rng)
    for rhythm in rhythms:
        bump = np.exp(-0.5 * ((freqs - rhythm.freq_hz) / rhythm.width_hz) ** 2)
        signal += rhythm.amplitude_uv * shaped_noise(n_channels, n_samples, sfreq, bump, rng)
    return signal


def sine(seconds: float, sfreq: float, freq_hz: float, amplitude_uv: float) -> np.ndarray:
    """A pure sine (e.g. mains interference) of peak ``amplitude_uv``, one row."""
    t = np.arange(round(seconds * sfreq)) / sfreq
    return np.asarray(amplitude_uv * np.sin(2 * np.pi * freq_hz * t))[np.newaxis, :]
