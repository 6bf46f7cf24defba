"""Follow each stream over time: update its drowsiness trend and, with enough signal, its sleep staging."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from model_backends.base.errors import BadRequestError

from .artifacts import ArtifactThresholds
from .filtering import FilterDesigns
from .signal_input import EEGWindow
from .signal_ring import SignalRing
from .sleep_staging import EPOCH_SECONDS, MIN_SECONDS, SleepStager
from .stream_registry import StreamRegistry, StreamState
from .window_analysis import WindowAnalysis, analyze_window

logger = logging.getLogger(__name__)

#: Channels YASA's classifier suits best (central, then frontal/parietal), by 10-20 name.
PREFERRED_STAGING_CHANNELS: tuple[str, ...] = ("C4", "C3", "Cz", "Fz", "Pz", "Fpz", "F4", "F3", "Oz", "O2", "O1")
#: The index the trend follows.
TREND_INDEX = "theta_alpha_over_beta"


@dataclass(frozen=True)
class StagingSettings:
    """``buffer_seconds`` of one channel are kept per stream; staging needs ``min_seconds`` and reruns
    after every ``restage_seconds`` of new signal; above ``max_sfreq`` it is skipped (memory)."""

    buffer_seconds: float = 600.0
    min_seconds: float = MIN_SECONDS
    restage_seconds: float = EPOCH_SECONDS
    max_sfreq: float = 1024.0


class StreamMonitor:
    """Owns the stream registry and uses the sleep stager; one call to :meth:`observe` per window."""

    def __init__(self, registry: StreamRegistry, stager: SleepStager, settings: StagingSettings | None = None) -> None:
        self.registry = registry
        self.stager = stager
        self.settings = settings or StagingSettings()

    def analyze(
        self,
        stream_id: str | None,
        window: EEGWindow,
        thresholds: ArtifactThresholds | None = None,
        designs: FilterDesigns | None = None,
    ) -> WindowAnalysis:
        """``analyze_window``; a stream's window is filtered as the continuation of its previous one."""
        if stream_id is None:
            return analyze_window(window, thresholds, designs)
        state = self.registry.get(stream_id)
        with state.lock:
            return analyze_window(window, thresholds, designs, state.filter)

    def observe(
        self, stream_id: str, window: EEGWindow, analysis: WindowAnalysis, staging_channel: str | None = None
    ) -> dict[str, Any]:
        """Add a window to its stream; returns the stream's trend and staging for the response."""
        if staging_channel is not None and staging_channel not in window.ch_names:
            raise BadRequestError(f"data.staging_channel {staging_channel!r} is not one of data.ch_names")
        state = self.registry.get(stream_id)
        means = analysis.mean_indices()
        with state.lock:  # windows of one stream are applied one at a time, whatever the concurrency
            state.signal_seconds += window.duration_s
            trend = state.trend.update(state.signal_seconds, None if means is None else means[TREND_INDEX])
            return {
                "stream_id": stream_id,
                "signal_seconds": round(state.signal_seconds, 3),
                "trend_index": TREND_INDEX,
                "trend": trend.to_dict(),
                "staging": self._staging(state, window, analysis, staging_channel),
            }

    def _staging(
        self, state: StreamState, window: EEGWindow, analysis: WindowAnalysis, requested: str | None
    ) -> dict[str, Any]:
        if window.sfreq > self.settings.max_sfreq:
            return {"status": "unsupported", "reason": f"staging supports sfreq up to {self.settings.max_sfreq:g} Hz"}
        ring = self._ring_for(state, window, analysis, requested)
        assert state.staging_channel is not None
        ring.append(window.signal[window.ch_names.index(state.staging_channel)])
        state.samples_since_staging += window.n_samples
        info: dict[str, Any] = {"channel": state.staging_channel, "buffered_s": round(ring.size / window.sfreq, 3)}
        if ring.size < self.settings.min_seconds * window.sfreq:
            return {"status": "collecting", **info, "needed_s": self.settings.min_seconds}
        if not self.stager.ready:
            return {"status": self.stager.status, **info}
        computed = state.last_staging is None or state.samples_since_staging >= self.settings.restage_seconds * (
            window.sfreq
        )
        if computed:
            try:
                state.last_staging = self.stager.stage(ring.latest(), window.sfreq, state.staging_channel)
            except Exception as exc:
                logger.exception("stream %s: sleep staging failed", state.stream_id)
                return {"status": "error", **info, "error": f"{type(exc).__name__}: {exc}"}
            state.samples_since_staging = 0
        assert state.last_staging is not None
        age = state.samples_since_staging / window.sfreq
        return {"status": "ok", **info, "computed": computed, "age_s": round(age, 3), **state.last_staging.to_dict()}

    def _ring_for(
        self, state: StreamState, window: EEGWindow, analysis: WindowAnalysis, requested: str | None
    ) -> SignalRing:
        """The stream's buffer; a new one when the channel or the sampling rate changes."""
        channel = requested or state.staging_channel
        if channel is None or channel not in window.ch_names:
            channel = pick_staging_channel(window.ch_names, analysis.good_channels)
        if state.ring is None or channel != state.staging_channel or window.sfreq != state.sfreq:
            if state.ring is not None:
                logger.info("stream %s: staging buffer restarted (%s at %g Hz)", state.stream_id, channel, window.sfreq)
            state.ring = SignalRing(round(self.settings.buffer_seconds * window.sfreq))
            state.staging_channel, state.sfreq = channel, window.sfreq
            state.samples_since_staging, state.last_staging = 0, None
        return state.ring


def pick_staging_channel(ch_names: tuple[str, ...], good: list[int]) -> str:
    """A central channel if there is one (``C4``, ``C4-M1``...), else the first good channel, else the first."""
    for preferred in PREFERRED_STAGING_CHANNELS:
        for i, name in enumerate(ch_names):
            base = name.split("-")[0].strip().lower()
            if base == preferred.lower() and (i in good or not good):
                return name
    return ch_names[good[0]] if good else ch_names[0]
