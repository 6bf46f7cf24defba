"""Per-channel artifact flags on the raw signal: flat, clipped (saturated) and excessive mains noise.

All three are measured before any filtering: the notch would hide the line noise, and the
band-pass would turn a clipped or flat trace into something that looks like EEG.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .band_power import band_power


@dataclass(frozen=True)
class ArtifactThresholds:
    """When a channel counts as bad.

    ``flat_std_uv``: a standard deviation below this (microvolts) is a flat, disconnected channel.
    ``clip_fraction``: share of samples sitting on the channel's own extremes (or beyond
    ``clip_uv``, the amplifier's range, when known) above which it is clipped.
    ``line_noise_ratio``: mains power (+-1 Hz) over the 1-45 Hz EEG power above which the
    electrode contact is suspect.
    """

    flat_std_uv: float = 0.5
    clip_fraction: float = 0.01
    clip_uv: float | None = None
    line_noise_ratio: float = 0.5


@dataclass(frozen=True)
class ChannelArtifacts:
    flat: bool
    clipped: bool
    line_noise: bool
    clipped_fraction: float
    line_noise_ratio: float

    @property
    def bad(self) -> bool:
        """Flat or clipped channels are left out of averages; line noise is notched, so it only warns."""
        return self.flat or self.clipped


def flat_channels(signal: np.ndarray, thresholds: ArtifactThresholds) -> np.ndarray:
    """True for channels whose standard deviation is below ``flat_std_uv``."""
    return np.asarray(signal.std(axis=-1) < thresholds.flat_std_uv)


def clipped_fractions(signal: np.ndarray, thresholds: ArtifactThresholds) -> np.ndarray:
    """Share of each channel's samples at its extremes (a saturated ADC sits on its rails)."""
    low = signal.min(axis=-1, keepdims=True)
    high = signal.max(axis=-1, keepdims=True)
    tol = 1e-4 * (high - low)
    at_rails = (signal >= high - tol) | (signal <= low + tol)
    if thresholds.clip_uv is not None:
        at_rails |= np.abs(signal) >= thresholds.clip_uv
    fraction = at_rails.mean(axis=-1)
    # One sample is always the maximum and one the minimum; two samples are not clipping.
    return np.asarray(np.where(at_rails.sum(axis=-1) <= 2, 0.0, fraction))


def line_noise_ratios(psd: np.ndarray, freqs: np.ndarray, line_freqs: Sequence[float]) -> np.ndarray:
    """Mains power (+-1 Hz around each line frequency, the largest) over the 1-45 Hz power, per channel."""
    eeg = band_power(psd, freqs, 1.0, 45.0)
    ratios = np.zeros(psd.shape[0])
    for f in line_freqs:
        if f + 1.0 <= freqs[-1]:
            line = band_power(psd, freqs, f - 1.0, f + 1.0 + 1e-9)
            ratios = np.maximum(ratios, line / np.maximum(eeg, 1e-12))
    return ratios


def detect_artifacts(
    signal: np.ndarray,
    raw_psd: np.ndarray,
    raw_freqs: np.ndarray,
    line_freqs: Sequence[float],
    thresholds: ArtifactThresholds,
) -> list[ChannelArtifacts]:
    """Flags for each channel of the raw ``signal``, given the PSD of that same raw signal."""
    flat = flat_channels(signal, thresholds)
    clipped = clipped_fractions(signal, thresholds)
    line = line_noise_ratios(raw_psd, raw_freqs, line_freqs)
    return [
        ChannelArtifacts(
            flat=bool(flat[i]),
            clipped=bool(not flat[i] and clipped[i] > thresholds.clip_fraction),
            line_noise=bool(not flat[i] and line[i] > thresholds.line_noise_ratio),
            clipped_fraction=float(clipped[i]),
            line_noise_ratio=float(line[i]),
        )
        for i in range(signal.shape[0])
    ]
