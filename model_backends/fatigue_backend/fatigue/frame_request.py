"""One frame's request fields and answer: validate what the client sent, shape what it gets back."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from model_backends.base.errors import BadRequestError

from .geometry import LEFT_EYE, RIGHT_EYE, eye_aspect_ratio, face_box, head_pose, mouth_aspect_ratio
from .streams import FrameSample
from .thresholds import FatigueThresholds

DEFAULT_STREAM = "default"


@dataclass(frozen=True)
class FrameOptions:
    """The request's optional fields besides the image."""

    stream_id: str
    timestamp: float | None
    return_landmarks: bool

    @classmethod
    def parse(cls, data: dict[str, Any], context_stream_id: str | None) -> FrameOptions:
        """Read ``stream_id`` (the request's own first), ``timestamp`` (seconds) and ``return_landmarks``."""
        stream_id = context_stream_id or data.get("stream_id") or DEFAULT_STREAM
        if not isinstance(stream_id, str):
            raise BadRequestError("data.stream_id must be a string")
        ts = data.get("timestamp")
        if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts)):
            raise BadRequestError("data.timestamp must be a finite number of seconds")
        landmarks = data.get("return_landmarks", False)
        if not isinstance(landmarks, bool):
            raise BadRequestError("data.return_landmarks must be true or false")
        return cls(stream_id=stream_id, timestamp=None if ts is None else float(ts), return_landmarks=landmarks)


def measure_face(points: np.ndarray, width: int, height: int, thresholds: FatigueThresholds) -> dict[str, Any]:
    """The per-frame measures of one face's landmarks."""
    right = eye_aspect_ratio(points, RIGHT_EYE)
    left = eye_aspect_ratio(points, LEFT_EYE)
    mean = (left + right) / 2.0
    mar = mouth_aspect_ratio(points)
    pose = head_pose(points)
    box = face_box(points, width, height)
    return {
        "face_found": True,
        "face_box": {k: round(v, 1) for k, v in vars(box).items()},
        "ear": {"left": round(left, 4), "right": round(right, 4), "mean": round(mean, 4)},
        "mar": round(mar, 4),
        "head_pose": {k: round(v, 2) for k, v in vars(pose).items()},
        "eyes_closed": mean < thresholds.ear_closed,
        "mouth_open": mar > thresholds.mar_yawn,
        "landmark_count": int(points.shape[0]),
    }


def no_face() -> dict[str, Any]:
    """The per-frame answer when no face is in the image."""
    return {
        "face_found": False,
        "face_box": None,
        "ear": None,
        "mar": None,
        "head_pose": None,
        "eyes_closed": None,
        "mouth_open": None,
        "landmark_count": 0,
    }


def frame_sample(t: float, measures: dict[str, Any]) -> FrameSample:
    """The stream's view of a frame's measures."""
    if not measures["face_found"]:
        return FrameSample(t)
    return FrameSample(t, ear=measures["ear"]["mean"], mar=measures["mar"], pitch=measures["head_pose"]["pitch"])
