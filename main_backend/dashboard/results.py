"""The latest result of each backend, trimmed to small fields, for the dashboard."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

MAX_FIELDS = 24
MAX_TEXT = 80
MAX_LIST = 8

Scalar = str | int | float | bool | None


class LatestResults:
    """Keeps the last final answer per backend; ``observe`` is the router's result listener.

    Only small values are kept: top-level numbers, strings, booleans and short lists of them,
    and the same one level down in nested objects (as ``parent.key``), so a fatigue answer
    shows ``stream.fatigue_score`` and ``stream.level`` while images and landmarks are dropped.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._latest: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._clock = clock

    def observe(self, backend: str, answer: dict[str, Any]) -> None:
        data = answer.get("data")
        if not isinstance(data, dict):
            return
        self._counts[backend] = self._counts.get(backend, 0) + 1
        self._latest[backend] = {
            "at": self._clock(),
            "request_id": _small(answer.get("request_id")),
            "fields": small_fields(data),
        }

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {name: {**entry, "count": self._counts[name]} for name, entry in self._latest.items()}


def small_fields(data: dict[str, Any]) -> dict[str, Scalar | list[Scalar]]:
    """The small values of ``data`` (and of its nested objects, one level down), at most MAX_FIELDS."""
    out: dict[str, Scalar | list[Scalar]] = {}
    nested: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if len(out) >= MAX_FIELDS:
            break
        if isinstance(value, dict):
            nested.append((str(key), value))
            continue
        kept = _keep(value)
        if kept is not _DROP:
            out[str(key)] = kept
    for parent, inner in nested:
        for key, value in inner.items():
            if len(out) >= MAX_FIELDS:
                return out
            kept = _keep(value)
            if kept is not _DROP and not isinstance(value, dict):
                out[f"{parent}.{key}"] = kept
    return out


_DROP = object()


def _keep(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
    if isinstance(value, list) and len(value) <= MAX_LIST and all(_is_scalar(v) for v in value):
        return [_small(v) for v in value]
    return _DROP


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _small(value: Any) -> Scalar:
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    return value if _is_scalar(value) else None
