"""Zero-phase notch + band-pass filtering: designed once per sampling rate with mne.filter, applied with SciPy.

Designing an IIR filter (mne.filter.create_filter) costs ~6 ms and applying it well under one,
so :class:`FilterDesigns` keeps each design; the notches and the band-pass are cascaded into
one set of second-order sections and run forward and backward in a single pass.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal as sp_signal

BANDPASS_HZ: tuple[float, float] = (0.5, 45.0)
#: A 4th-order Butterworth run forward and backward (zero phase). FIR filters for a 0.5 Hz edge
#: need ~6.6 s of taps, longer than a typical 4 s window; an IIR filter has no such minimum.
IIR_ORDER = 4
#: Half-width of the stop band around each mains frequency, in Hz.
NOTCH_HALF_WIDTH_HZ = 1.0
#: Keep filter edges this fraction of Nyquist or lower.
NYQUIST_MARGIN = 0.9


@dataclass(frozen=True)
class FilterDesign:
    """Cascaded second-order sections and the padding (samples) their ringing needs."""

    sos: np.ndarray
    padlen: int
    notch_hz: tuple[float, ...]
    bandpass_hz: tuple[float, float]


def _iir(sfreq: float, l_freq: float, h_freq: float) -> tuple[np.ndarray, int]:
    import mne  # imported here: applying a design needs only SciPy

    params = {"order": IIR_ORDER, "ftype": "butter", "output": "sos"}
    design = mne.filter.create_filter(None, sfreq, l_freq, h_freq, method="iir", iir_params=params, verbose="error")
    return np.asarray(design["sos"]), int(design["padlen"])


def design_filter(sfreq: float, line_freqs: Sequence[float]) -> FilterDesign:
    """Notches at each of ``line_freqs`` below Nyquist (a band-stop: l_freq > h_freq), then the band-pass."""
    edge = NYQUIST_MARGIN * sfreq / 2
    notches = tuple(f for f in line_freqs if f + NOTCH_HALF_WIDTH_HZ < edge)
    parts = [_iir(sfreq, f + NOTCH_HALF_WIDTH_HZ, f - NOTCH_HALF_WIDTH_HZ) for f in notches]
    band = (BANDPASS_HZ[0], min(BANDPASS_HZ[1], edge))
    parts.append(_iir(sfreq, *band))
    return FilterDesign(
        sos=np.vstack([sos for sos, _ in parts]),
        padlen=max(pad for _, pad in parts),
        notch_hz=notches,
        bandpass_hz=band,
    )


def apply_filter(signal: np.ndarray, design: FilterDesign) -> np.ndarray:
    """Filter every row of ``signal`` forward and backward (zero phase), padded against edge ringing."""
    padlen = min(design.padlen, signal.shape[-1] - 1)
    return np.asarray(sp_signal.sosfiltfilt(design.sos, signal, axis=-1, padtype="odd", padlen=padlen))


class FilterDesigns:
    """Designs by (sampling rate, mains frequencies), made on first use. Thread-safe."""

    def __init__(self, max_entries: int = 32) -> None:
        self.max_entries = max_entries
        self._designs: dict[tuple[float, tuple[float, ...]], FilterDesign] = {}
        self._lock = threading.Lock()

    def get(self, sfreq: float, line_freqs: Sequence[float]) -> FilterDesign:
        key = (float(sfreq), tuple(line_freqs))
        with self._lock:
            design = self._designs.get(key)
        if design is None:
            design = design_filter(sfreq, line_freqs)
            with self._lock:
                if len(self._designs) >= self.max_entries:
                    self._designs.clear()
                self._designs[key] = design
        return design


def clean(
    signal: np.ndarray, sfreq: float, line_freqs: Sequence[float], designs: FilterDesigns | None = None
) -> tuple[np.ndarray, FilterDesign]:
    """Notch + band-pass ``signal``; returns the filtered signal and the design used."""
    design = designs.get(sfreq, line_freqs) if designs is not None else design_filter(sfreq, line_freqs)
    return apply_filter(signal, design), design
