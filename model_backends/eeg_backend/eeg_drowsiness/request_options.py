"""The optional per-request settings besides the signal: stream id, staging channel, amplifier range."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model_backends.base.context import current_request
from model_backends.base.errors import BadRequestError

from .artifacts import ArtifactThresholds

_MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class RequestOptions:
    stream_id: str | None
    staging_channel: str | None
    thresholds: ArtifactThresholds


def request_options(data: dict[str, Any]) -> RequestOptions:
    """Read ``data.stream_id`` (else the request's ``stream_id``), ``data.staging_channel``, ``data.clip_uv``.

    ``data.stream_id`` wins: it keeps a stream's windows together without the hub's
    newest-frame-only policy for ``stream_id``, which would drop EEG chunks.
    """
    stream_id = data.get("stream_id")
    if stream_id is None:
        ctx = current_request()
        stream_id = ctx.stream_id if ctx is not None else None
    if stream_id is not None and (not isinstance(stream_id, str) or not 0 < len(stream_id) <= _MAX_ID_LENGTH):
        raise BadRequestError(f"data.stream_id must be a string of 1-{_MAX_ID_LENGTH} characters")
    channel = data.get("staging_channel")
    if channel is not None and not isinstance(channel, str):
        raise BadRequestError("data.staging_channel must be a channel name from data.ch_names")
    clip_uv = data.get("clip_uv")
    if clip_uv is not None and (
        isinstance(clip_uv, bool) or not isinstance(clip_uv, int | float) or not math.isfinite(clip_uv) or clip_uv <= 0
    ):
        raise BadRequestError("data.clip_uv must be a positive number: the amplifier's range in microvolts")
    thresholds = ArtifactThresholds(clip_uv=None if clip_uv is None else float(clip_uv))
    return RequestOptions(stream_id=stream_id, staging_channel=channel, thresholds=thresholds)
