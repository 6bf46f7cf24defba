"""Prometheus gauges for replicated backends: replicas by state, per-replica in-flight and latency."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Gauge


class ReplicaMetrics:
    """Filled from each replica set's snapshot at scrape time (nothing on the hot path)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.replicas = Gauge(
            "hub_backend_replicas", "Replicas of a Ray-placed backend, by state", ["model", "state"], registry=registry
        )
        self.in_flight = Gauge(
            "hub_replica_in_flight", "Requests in flight on one replica", ["model", "replica"], registry=registry
        )
        self.latency = Gauge(
            "hub_replica_latency_seconds",
            "Per-replica latency over the last minute",
            ["model", "replica", "quantile"],
            registry=registry,
        )

    def refresh(self, snapshots: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """``snapshots``: (backend, its ``replicas`` snapshot) for every replicated backend."""
        self.replicas.clear()
        self.in_flight.clear()
        self.latency.clear()
        for model, snap in snapshots:
            states: dict[str, int] = {"ready": snap["ready"]}
            for item in snap["items"]:
                if not item["connected"]:
                    states[item["state"]] = states.get(item["state"], 0) + 1
                self.in_flight.labels(model, item["replica"]).set(item["in_flight"])
                for quantile in ("p50", "p99"):
                    value = item["latency"].get(f"{quantile}_ms")
                    if value is not None:
                        self.latency.labels(model, item["replica"], quantile).set(value / 1000)
            for state, count in states.items():
                self.replicas.labels(model, state).set(count)
