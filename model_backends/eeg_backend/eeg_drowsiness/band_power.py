"""Welch band powers, relative powers and the drowsiness indices from the literature, per channel."""

from __future__ import annotations

import numpy as np

#: Classic EEG bands in Hz, [low, high).
BANDS: dict[str, tuple[float, float]] = {
    "delta": (1.0, 4.0),
    "theta": (4.0, 8.0),
    "alpha": (8.0, 13.0),
    "beta": (13.0, 30.0),
    "gamma": (30.0, 45.0),
}
BAND_NAMES: tuple[str, ...] = tuple(BANDS)

#: Spectral drowsiness indices that rise as alertness falls (Eoh et al. 2005; Jap et al. 2009):
#: (theta+alpha)/beta, alpha/beta and theta/beta. Each entry: (numerator bands, denominator bands).
INDICES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "theta_alpha_over_beta": (("theta", "alpha"), ("beta",)),
    "alpha_over_beta": (("alpha",), ("beta",)),
    "theta_over_beta": (("theta",), ("beta",)),
}
INDEX_NAMES: tuple[str, ...] = tuple(INDICES)
#: Welch segments of 2 s give 0.5 Hz resolution, enough to separate the delta/theta edge.
SEGMENT_SECONDS = 2.0
_EPS = 1e-12


def welch_psd(
    signal: np.ndarray, sfreq: float, fmin: float = 0.0, fmax: float = np.inf
) -> tuple[np.ndarray, np.ndarray]:
    """Power spectral density per channel (units of the signal squared per Hz) and its frequencies."""
    import mne  # imported here so the pure band arithmetic below works without mne

    n_per_seg = min(signal.shape[-1], round(SEGMENT_SECONDS * sfreq))
    psd, freqs = mne.time_frequency.psd_array_welch(
        signal,
        sfreq,
        fmin=fmin,
        fmax=min(fmax, sfreq / 2),
        n_fft=n_per_seg,
        n_per_seg=n_per_seg,
        n_overlap=n_per_seg // 2,
        verbose="error",
    )
    return np.asarray(psd), np.asarray(freqs)


def band_power(psd: np.ndarray, freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Absolute power in [low, high) Hz per channel: the PSD summed times the bin width."""
    df = float(freqs[1] - freqs[0]) if freqs.size > 1 else 1.0
    mask = (freqs >= low) & (freqs < high)
    return np.asarray(psd[..., mask].sum(axis=-1) * df)


def band_powers(psd: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Absolute power of each band in :data:`BANDS`: channels x bands."""
    return np.stack([band_power(psd, freqs, lo, hi) for lo, hi in BANDS.values()], axis=-1)


def relative_powers(powers: np.ndarray) -> np.ndarray:
    """Each band's share of the 1-45 Hz power (rows sum to 1; zero rows stay zero)."""
    total = powers.sum(axis=-1, keepdims=True)
    return np.asarray(np.where(total > _EPS, powers / np.maximum(total, _EPS), 0.0))


def drowsiness_indices(powers: np.ndarray) -> np.ndarray:
    """The :data:`INDICES` ratios from band powers: channels x indices (0 when the denominator is 0)."""
    columns = []
    for numerator, denominator in INDICES.values():
        num = sum(powers[..., BAND_NAMES.index(b)] for b in numerator)
        den = sum(powers[..., BAND_NAMES.index(b)] for b in denominator)
        columns.append(np.where(den > _EPS, num / np.maximum(den, _EPS), 0.0))
    return np.stack(columns, axis=-1)
