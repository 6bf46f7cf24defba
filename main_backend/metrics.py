"""Prometheus metrics: one registry per hub (no globals), gauges refreshed at scrape time."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import accumulate

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from main_backend.backend_runtime import BackendRuntime
from main_backend.placement.replica_link import ReplicaSetLink
from main_backend.placement.replica_metrics import ReplicaMetrics
from main_backend.state import BackendState
from main_backend.stream_stats import StreamStats

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class RequestFigures(Collector):
    """``hub_requests_total`` and ``hub_request_latency_seconds``: counted in plain numbers on each
    request (prometheus_client's own metrics take a lock per update; the hub updates them from
    its one event-loop thread) and turned into metric families at scrape time."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self._buckets = list(buckets)
        self.counts: dict[tuple[str, str], int] = {}
        #: model -> counts per bucket (the last one: +Inf), then the sum of the seconds.
        self._latency: dict[str, list[float]] = {}

    def finished(self, model: str, outcome: str, seconds: float) -> None:
        key = (model, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1
        if outcome == "ok":
            figures = self._latency.get(model)
            if figures is None:
                figures = self._latency[model] = [0.0] * (len(self._buckets) + 2)
            figures[bisect_left(self._buckets, seconds)] += 1  # the first bucket whose bound is >= seconds
            figures[-1] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "hub_requests", "Requests finished, by backend and outcome", labels=["model", "outcome"]
        )
        for (model, outcome), count in self.counts.items():
            requests.add_metric([model, outcome], count)
        yield requests
        latency = HistogramMetricFamily(
            "hub_request_latency_seconds", "Hub-side latency of successful requests", labels=["model"]
        )
        bounds = [*map(floatToGoString, self._buckets), "+Inf"]
        for model, figures in self._latency.items():
            cumulative = list(accumulate(figures[:-1]))
            latency.add_metric([model], list(zip(bounds, cumulative, strict=True)), sum_value=figures[-1])
        yield latency


class HubMetrics:
    """Counters updated on the hot path; gauges filled from the runtimes on each scrape."""

    def __init__(
        self,
        runtimes: Mapping[str, BackendRuntime],
        clients: Callable[[], int],
        uptime: Callable[[], float],
        streams: StreamStats | None = None,
    ) -> None:
        self._streams = streams
        self.registry = CollectorRegistry()
        self._runtimes = runtimes
        self._clients = clients
        self._uptime = uptime
        r = self.registry
        self.requests = RequestFigures(_BUCKETS)
        r.register(self.requests)
        self.model_loads = Counter("hub_model_loads", "Model loads", ["model"], registry=r)
        self.model_unloads = Counter("hub_model_unloads", "Model unloads", ["model", "reason"], registry=r)
        self.backend_restarts = Counter("hub_backend_restarts", "Backend process restarts", ["model"], registry=r)
        self.in_flight = Gauge("hub_in_flight_requests", "Requests in flight to a backend", ["model"], registry=r)
        self.queued = Gauge(
            "hub_queued_requests", "Requests waiting in the hub, by priority", ["model", "priority"], registry=r
        )
        self.up = Gauge("hub_backend_up", "1 if the backend is connected and serving", ["model"], registry=r)
        self.state = Gauge("hub_backend_state", "1 for the backend's current state", ["model", "state"], registry=r)
        self.loaded = Gauge("hub_model_loaded", "1 if the backend's model is loaded", ["model"], registry=r)
        self.rss = Gauge("hub_backend_memory_bytes", "Backend memory from its last pong", ["model", "kind"], registry=r)
        self.rtt = Gauge("hub_backend_ping_rtt_seconds", "Last health_check round trip", ["model"], registry=r)
        self.superseded = Gauge(
            "hub_superseded_total", "Frames replaced by a newer frame of their stream", ["model"], registry=r
        )
        self.stream_age = Gauge(
            "hub_stream_frame_age_seconds",
            "Age of a stream's answers, capture (or hub receive) to answer, over the last 10 s",
            ["model", "stream", "quantile"],
            registry=r,
        )
        self.stream_fps = Gauge(
            "hub_stream_served_fps",
            "Answers per second a stream got over the last 10 s",
            ["model", "stream"],
            registry=r,
        )
        self.stream_dropped = Gauge(
            "hub_stream_dropped_frames",
            "Frames of a stream replaced by a newer one before they ran (superseded), since the stream began",
            ["model", "stream"],
            registry=r,
        )
        self.clients_gauge = Gauge("hub_clients", "Connected WebSocket clients", registry=r)
        self.uptime_gauge = Gauge("hub_uptime_seconds", "Seconds since the hub started", registry=r)
        self.replica_metrics = ReplicaMetrics(r)

    # Observer protocol of the router
    def request_started(self, runtime: BackendRuntime) -> None:
        pass

    def request_finished(self, runtime: BackendRuntime, outcome: str, seconds: float) -> None:
        self.requests.finished(runtime.name, outcome, seconds)

    def render(self) -> bytes:
        self._refresh()
        return generate_latest(self.registry)

    def _refresh_streams(self) -> None:
        if self._streams is None:
            return
        for gauge in (self.stream_age, self.stream_fps, self.stream_dropped):
            gauge.clear()  # forgotten streams leave /metrics
        for model, stream, figures, fps in self._streams.figures():
            for quantile, q in (("0.5", 0.5), ("0.99", 0.99)):
                age = figures.percentile(q)
                if age is not None:
                    self.stream_age.labels(model, stream, quantile).set(age)
            self.stream_fps.labels(model, stream).set(fps)
            self.stream_dropped.labels(model, stream).set(figures.dropped)

    def _refresh(self) -> None:
        self._refresh_streams()
        self.replica_metrics.refresh(
            (name, rt.link.snapshot()["replicas"])
            for name, rt in self._runtimes.items()
            if isinstance(rt.link, ReplicaSetLink)
        )
        self.clients_gauge.set(self._clients())
        self.uptime_gauge.set(self._uptime())
        self.queued.clear()
        for name, rt in self._runtimes.items():
            self.in_flight.labels(name).set(rt.scheduler.in_flight)
            for priority, count in rt.scheduler.queued_by_priority().items():
                self.queued.labels(name, str(priority)).set(count)
            self.up.labels(name).set(1 if rt.serving else 0)
            for state in BackendState:
                self.state.labels(name, state.value).set(1 if rt.state.state is state else 0)
            self.loaded.labels(name).set(1 if rt.model_loaded else 0)
            if rt.pong is not None:
                self.rss.labels(name, "rss").set(rt.pong.memory.rss_bytes)
                if rt.pong.memory.gpu_bytes is not None:
                    self.rss.labels(name, "gpu").set(rt.pong.memory.gpu_bytes)
            if rt.link is not None and rt.link.last_rtt_s is not None:
                self.rtt.labels(name).set(rt.link.last_rtt_s)
            self.superseded.labels(name).set(rt.scheduler.superseded_total)
