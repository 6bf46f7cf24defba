"""The EEG drowsiness backend: band powers, drowsiness indices, artifacts, stream trends, N1 probability."""

from __future__ import annotations

import logging
from typing import Any

from eeg_drowsiness.filtering import FilterDesigns
from eeg_drowsiness.request_options import request_options
from eeg_drowsiness.signal_input import InputLimits, parse_window, unit_warnings
from eeg_drowsiness.sleep_staging import SleepStager
from eeg_drowsiness.stream_monitor import StreamMonitor
from eeg_drowsiness.stream_registry import StreamRegistry
from eeg_drowsiness.synthetic_eeg import ALERT, synthetic_eeg
from eeg_drowsiness.window_analysis import analyze_window

from model_backends.base import BaseModelBackend, HubError, run_backend

logger = logging.getLogger(__name__)


class EEGBackend(BaseModelBackend):
    """EEG drowsiness: band powers, (theta+alpha)/beta and friends, artifacts, trends, sleep staging."""

    name = "eeg"
    version = "0.1.0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = InputLimits()
        self._monitor: StreamMonitor | None = None
        self._designs = FilterDesigns()

    def initialize_model(self) -> None:
        """Start the staging model's load (numba compile, ~15 s) in the background; warm the filters now."""
        stager = SleepStager()
        stager.start_loading()
        warm = synthetic_eeg(4.0, 256.0, 2, ALERT, seed=0)
        analyze_window(parse_window({"eeg": warm.tolist(), "sfreq": 256}, self.limits), designs=self._designs)
        self._monitor = StreamMonitor(StreamRegistry(), stager)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        monitor = self._monitor
        if monitor is None:
            raise HubError("the EEG model is not loaded")
        options = request_options(data)
        window = parse_window(data, self.limits)
        analysis = monitor.analyze(options.stream_id, window, options.thresholds, self._designs)
        result = analysis.to_dict()
        result["warnings"] = unit_warnings(window)
        result["stream"] = (
            monitor.observe(options.stream_id, window, analysis, options.staging_channel) if options.stream_id else None
        )
        result["staging_model"] = monitor.stager.status
        return result

    def cleanup(self) -> None:
        if self._monitor is not None:
            self._monitor.stager.unload()
            self._monitor.registry.clear()
            self._monitor = None

    def model_name(self) -> str | None:
        return "yasa-0.8.1/clf_eeg_lgb + mne-1.13 band powers"


if __name__ == "__main__":
    run_backend(EEGBackend)
