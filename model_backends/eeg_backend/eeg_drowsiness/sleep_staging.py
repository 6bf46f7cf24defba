"""Sleep staging with YASA's trained LightGBM classifier: N1 (drowsiness) probability of recent epochs.

yasa 0.8.1 (BSD-3) ships its classifiers inside the wheel (``yasa/classifiers/*.joblib``). We
load the EEG-only one ourselves, once, and call yasa only for the feature extraction (30 s
epochs, 100 Hz, features smoothed and normalised over the whole buffer). Importing antropy
compiles its numba kernels (~15 s), so :meth:`SleepStager.load` runs in a background thread
and the rest of the backend answers meanwhile.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .synthetic_eeg import DROWSY, synthetic_eeg

logger = logging.getLogger(__name__)

EPOCH_SECONDS = 30.0
#: yasa warns that results are unreliable below 5 minutes.
MIN_SECONDS = 300.0
#: yasa's labels -> ours (AASM names).
_STAGE_NAMES = {"W": "W", "N1": "N1", "N2": "N2", "N3": "N3", "R": "REM"}
STAGES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
#: How many of the latest epochs the "recent" N1 mean and the stage list cover (2 minutes).
RECENT_EPOCHS = 4


@dataclass(frozen=True)
class StagingResult:
    """Stage and probabilities of the latest 30 s epoch, plus the N1 mean of the last few epochs."""

    stage: str
    probabilities: dict[str, float]
    n1_recent_mean: float
    recent_stages: list[str]
    epochs: int
    seconds_used: float
    duration_ms: float

    @property
    def n1_probability(self) -> float:
        return self.probabilities["N1"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "n1_probability": round(self.n1_probability, 4),
            "n1_recent_mean": round(self.n1_recent_mean, 4),
            "probabilities": {k: round(v, 4) for k, v in self.probabilities.items()},
            "recent_stages": self.recent_stages,
            "epochs": self.epochs,
            "seconds_used": self.seconds_used,
            "duration_ms": round(self.duration_ms, 1),
        }


class SleepStager:
    """Owns the classifier. :meth:`start_loading` (or :meth:`load`), then :meth:`stage` once :attr:`ready`."""

    def __init__(self, *, warm_up: bool = True) -> None:
        self.warm_up = warm_up
        self.load_seconds: float | None = None
        self._clf: Any = None
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def status(self) -> str:
        """``ready``, ``warming_up``, ``failed: <why>`` or ``unloaded``."""
        if self._ready.is_set():
            return "ready"
        if self._error is not None:
            return f"failed: {self._error}"
        if self._thread is not None and self._thread.is_alive():
            return "warming_up"
        return "unloaded"

    def start_loading(self) -> threading.Thread:
        """Load (and warm up) in a daemon thread; :attr:`status` says when it is done."""
        self._thread = threading.Thread(target=self._load_logged, name="eeg-staging-load", daemon=True)
        self._thread.start()
        return self._thread

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def load(self) -> None:
        """Import yasa and antropy (numba compilation), load the classifier, stage 5 minutes once."""
        started = time.perf_counter()
        import antropy  # noqa: F401 - compiles its numba kernels on import; yasa needs them
        import joblib
        import yasa

        path = classifier_path(os.path.dirname(yasa.__file__))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf = joblib.load(path)
        for w in caught:
            logger.info("loading %s: %s", os.path.basename(path), str(w.message).splitlines()[0])
        self._clf = clf
        if self.warm_up:
            self._stage_now(synthetic_eeg(MIN_SECONDS, 256.0, 1, DROWSY, seed=0)[0], 256.0, "C4")
        self.load_seconds = time.perf_counter() - started
        self._ready.set()
        logger.info("sleep staging ready in %.1f s (%s)", self.load_seconds, os.path.basename(path))

    def _load_logged(self) -> None:
        try:
            self.load()
        except Exception as exc:
            logger.exception("sleep staging failed to load")
            self._error = f"{type(exc).__name__}: {exc}"

    def stage(self, signal_uv: np.ndarray, sfreq: float, ch_name: str) -> StagingResult:
        """Stage the whole 30 s epochs at the end of ``signal_uv`` (one channel, microvolts).

        Needs :data:`MIN_SECONDS` of signal and a loaded model (``RuntimeError`` otherwise).
        """
        if not self._ready.is_set():
            raise RuntimeError(f"sleep staging is not ready ({self.status})")
        return self._stage_now(signal_uv, sfreq, ch_name)

    def _stage_now(self, signal_uv: np.ndarray, sfreq: float, ch_name: str) -> StagingResult:
        import mne
        import yasa

        started = time.perf_counter()
        epoch = round(EPOCH_SECONDS * sfreq)
        n_epochs = signal_uv.size // epoch
        if n_epochs * EPOCH_SECONDS < MIN_SECONDS:
            raise ValueError(f"staging needs {MIN_SECONDS:g} s of signal, got {signal_uv.size / sfreq:.1f} s")
        used = np.asarray(signal_uv[-n_epochs * epoch :], dtype=np.float64) * 1e-6
        raw = mne.io.RawArray(used[np.newaxis, :], mne.create_info([ch_name], sfreq, "eeg"), verbose="error")
        features = yasa.SleepStaging(raw, eeg_name=ch_name).get_features()
        proba = np.asarray(self._clf.predict_proba(features[self._clf.feature_name_]))
        labels = [_STAGE_NAMES[str(c)] for c in self._clf.classes_]
        latest = dict(zip(labels, (float(p) for p in proba[-1]), strict=True))
        ordered = {s: latest[s] for s in STAGES}
        recent = proba[-RECENT_EPOCHS:]
        return StagingResult(
            stage=max(ordered, key=ordered.__getitem__),
            probabilities=ordered,
            n1_recent_mean=float(recent[:, labels.index("N1")].mean()),
            recent_stages=[labels[int(i)] for i in recent.argmax(axis=1)],
            epochs=int(n_epochs),
            seconds_used=n_epochs * EPOCH_SECONDS,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    def unload(self) -> None:
        """Drop the classifier (the imported modules stay: Python cannot unload them)."""
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=120)
        self._ready.clear()
        self._clf = None


def classifier_path(yasa_dir: str) -> str:
    """The newest EEG-only classifier shipped in the yasa wheel."""
    found = sorted(glob.glob(os.path.join(glob.escape(yasa_dir), "classifiers", "clf_eeg_lgb_*.joblib")))
    if not found:
        raise FileNotFoundError(f"no EEG-only classifier (clf_eeg_lgb_*.joblib) under {yasa_dir}/classifiers")
    return found[-1]
