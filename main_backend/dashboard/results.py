"""The latest result of each backend, trimmed to small fields, for the dashboard."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

MAX_FIELDS = 24
MAX_TEXT = 80
MAX_LIST = 8
#: Keys shown first when a result has more small values than MAX_FIELDS.
HEADLINE = re.compile(r"(score|level|emotion|label|class|state|prob|drows|fatigue|perclos|blink)", re.IGNORECASE)

Scalar = str | int | float | bool | None


class LatestResults:
    """Keeps the last final answer per backend; ``observe`` is the router's result listener.

    ``observe`` runs on every answer, so it only keeps a reference (one per backend, so memory
    stays bounded); ``snapshot`` (a few times a second, for the dashboard) trims the answers
    that are new to their small values: numbers, strings, booleans and short lists of them,
    also one level down in nested objects (``stream.fatigue_score``, ``faces[0].top_emotion``),
    so images and landmarks never reach the page.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._raw: dict[str, tuple[float, Any, dict[str, Any]]] = {}
        self._trimmed: dict[str, dict[str, Any]] = {}
        self._counts: dict[str, int] = {}
        self._clock = clock

    def observe(self, backend: str, answer: dict[str, Any], stream_id: str | None = None) -> None:
        data = answer.get("data")
        if isinstance(data, dict):
            self._counts[backend] = self._counts.get(backend, 0) + 1
            self._raw[backend] = (self._clock(), answer.get("request_id"), data)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        for backend, (at, request_id, data) in self._raw.items():
            self._trimmed[backend] = {"at": at, "request_id": _small(request_id), "fields": small_fields(data)}
        self._raw.clear()
        return {name: {**entry, "count": self._counts[name]} for name, entry in self._trimmed.items()}


def small_fields(data: dict[str, Any]) -> dict[str, Scalar | list[Scalar]]:
    """The small values of ``data`` and of its nested objects (one level down; a list's first object).

    At most MAX_FIELDS, headline values (scores, levels, labels) first when there are more.
    """
    found: list[tuple[str, Any]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            found.extend((f"{key}.{k}", v) for k, v in value.items())
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            found.extend((f"{key}[0].{k}", v) for k, v in value[0].items())
        else:
            found.append((str(key), value))
    kept = [(key, small) for key, value in found if (small := _keep(value)) is not _DROP]
    if len(kept) > MAX_FIELDS:
        kept.sort(key=lambda item: not HEADLINE.search(item[0]))  # stable: headline first, else as sent
    return dict(kept[:MAX_FIELDS])


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
