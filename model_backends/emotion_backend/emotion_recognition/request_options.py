"""The emotion request's optional fields besides the image: a face box hint and the smallest face to look for."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from model_backends.base.errors import BadRequestError

from .face_detector import Box

_BOX_KEYS = ("x", "y", "width", "height")


@dataclass(frozen=True)
class EmotionOptions:
    """``face_box``: classify this box, skip detection. ``min_face_px``: the detector's smallest face."""

    face_box: Box | None = None
    min_face_px: int | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> EmotionOptions:
        return cls(face_box=_face_box(data.get("face_box")), min_face_px=_min_face(data.get("min_face_px")))

    def check_fits(self, width: int, height: int) -> None:
        """Refuse a ``face_box`` that does not overlap the decoded image."""
        if self.face_box is None:
            return
        x, y, w, h = self.face_box
        if x >= width or y >= height or x + w <= 0 or y + h <= 0:
            raise BadRequestError(f"data.face_box {list(self.face_box)} lies outside the {width}x{height} image")


def _face_box(value: Any) -> Box | None:
    """``{"x", "y", "width", "height"}`` (the fatigue backend's ``face_box``) or ``[x, y, w, h]``."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) >= set(_BOX_KEYS):
        numbers = [value[k] for k in _BOX_KEYS]
    elif isinstance(value, list) and len(value) == 4:
        numbers = value
    else:
        raise BadRequestError('data.face_box must be {"x", "y", "width", "height"} or [x, y, w, h]')
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers):
        raise BadRequestError("data.face_box must hold finite numbers")
    x, y, w, h = (round(float(v)) for v in numbers)
    if w < 1 or h < 1:
        raise BadRequestError("data.face_box needs a width and height of at least 1 pixel")
    return x, y, w, h


def _min_face(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4096:
        raise BadRequestError("data.min_face_px must be an integer from 0 (whole frame only) to 4096")
    return value
