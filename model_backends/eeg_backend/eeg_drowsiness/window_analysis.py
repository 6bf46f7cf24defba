"""One EEG window in, its spectral picture out: artifacts, filtering, band powers and indices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .artifacts import ArtifactThresholds, ChannelArtifacts, detect_artifacts
from .band_power import (
    BAND_NAMES,
    BANDS,
    INDEX_NAMES,
    band_powers,
    drowsiness_indices,
    relative_powers,
    welch_psd,
)
from .filtering import BANDPASS_HZ, ContinuousFilter, FilterDesign, FilterDesigns, clean
from .signal_input import EEGWindow


@dataclass(frozen=True)
class WindowAnalysis:
    """Per-channel band powers (uV^2), relative powers, indices and artifacts of one window."""

    window: EEGWindow
    powers: np.ndarray
    relative: np.ndarray
    indices: np.ndarray
    artifacts: list[ChannelArtifacts]
    design: FilterDesign
    continuous: bool = False

    @property
    def good_channels(self) -> list[int]:
        return [i for i, a in enumerate(self.artifacts) if not a.bad]

    def mean_indices(self) -> dict[str, float] | None:
        """Each index averaged over the channels that are neither flat nor clipped (None if none are)."""
        good = self.good_channels
        if not good:
            return None
        means = self.indices[good].mean(axis=0)
        return {name: float(v) for name, v in zip(INDEX_NAMES, means, strict=True)}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready response body (channel-keyed dicts, rounded floats)."""
        names = self.window.ch_names
        return {
            "sfreq": self.window.sfreq,
            "n_channels": self.window.n_channels,
            "n_samples": self.window.n_samples,
            "duration_s": round(self.window.duration_s, 4),
            "ch_names": list(names),
            "bands_hz": {k: list(v) for k, v in BANDS.items()},
            "filter": {
                "bandpass_hz": list(self.design.bandpass_hz),
                "notch_hz": list(self.design.notch_hz),
                "mode": "continuous" if self.continuous else "zero_phase",
            },
            "band_power": _per_channel(names, BAND_NAMES, self.powers),
            "relative_power": _per_channel(names, BAND_NAMES, self.relative),
            "indices": _per_channel(names, INDEX_NAMES, self.indices),
            "mean_indices": self.mean_indices(),
            "artifacts": {n: _artifact_dict(a) for n, a in zip(names, self.artifacts, strict=True)},
            "bad_channels": [names[i] for i, a in enumerate(self.artifacts) if a.bad],
        }


def analyze_window(
    window: EEGWindow,
    thresholds: ArtifactThresholds | None = None,
    designs: FilterDesigns | None = None,
    continuous: ContinuousFilter | None = None,
) -> WindowAnalysis:
    """Artifacts on the raw signal, then notch + band-pass, Welch band powers and drowsiness indices.

    Pass ``designs`` to reuse filter designs between calls (a backend keeps one), and a
    stream's ``continuous`` filter to filter its consecutive windows as one signal.
    """
    thresholds = thresholds or ArtifactThresholds()
    raw_psd, raw_freqs = welch_psd(window.signal, window.sfreq)
    artifacts = detect_artifacts(window.signal, raw_psd, raw_freqs, window.line_freqs, thresholds)
    filtered, design = clean(window.signal, window.sfreq, window.line_freqs, designs, continuous)
    psd, freqs = welch_psd(filtered, window.sfreq, BANDPASS_HZ[0], BANDPASS_HZ[1])
    powers = band_powers(psd, freqs)
    return WindowAnalysis(
        window=window,
        powers=powers,
        relative=relative_powers(powers),
        indices=drowsiness_indices(powers),
        artifacts=artifacts,
        design=design,
        continuous=continuous is not None and continuous.continued,
    )


def _per_channel(ch_names: tuple[str, ...], keys: tuple[str, ...], values: np.ndarray) -> dict[str, dict[str, float]]:
    return {
        ch: {k: _round(v) for k, v in zip(keys, row, strict=True)} for ch, row in zip(ch_names, values, strict=True)
    }


def _artifact_dict(a: ChannelArtifacts) -> dict[str, Any]:
    return {
        "flat": a.flat,
        "clipped": a.clipped,
        "line_noise": a.line_noise,
        "clipped_fraction": round(a.clipped_fraction, 5),
        "line_noise_ratio": _round(a.line_noise_ratio),
    }


def _round(value: float) -> float:
    """Six significant digits: plenty for powers, and a smaller JSON answer."""
    return float(f"{float(value):.6g}")
