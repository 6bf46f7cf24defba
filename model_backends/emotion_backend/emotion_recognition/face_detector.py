"""Faces in a frame of any size: BlazeFace on the whole frame, plus overlapping tiles where faces would be too small.

BlazeFace sees a frame shrunk to 192 px; it scores a face reliably from about 14 px at that
scale (a 48-px face in a 640-px frame). For larger frames the detector also runs on square
tiles small enough for ``min_face_px`` faces to reach that size. Tiles overlap by the
smallest face the whole-frame pass finds, so every face is either whole inside a tile or
found by the whole-frame pass; a tile's boxes that touch a cut edge are dropped (the
neighbouring tile or the whole-frame pass has that face whole). All boxes are then merged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .blazeface import INPUT_SIZE, BlazeFace, Detection, weighted_nms

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DetectorSettings:
    """How faces are looked for.

    ``min_score``: boxes scored lower are dropped (MediaPipe's default, 0.5; the best false
    box on our non-face photos, tiled, scores 0.40). ``min_face_px``: the smallest face side,
    in frame pixels, to find in frames larger than ``whole_frame_max_px`` (tiling pays for it;
    0 turns tiling off). ``reliable_input_px``: the face side in the detector's 192-px input
    from which BlazeFace full-range scores faces above ``min_score`` away from the frame's
    corners (measured on 48-px faces at random places: 16 px -> 0.54-0.82, 14 px -> 0.30-0.75).
    ``whole_frame_max_px``: frames up to this longer side are searched whole, never tiled (a
    640x480 frame puts a 48-px face at 14 px: found at 0.55-0.8 in the middle of the frame).
    """

    min_score: float = 0.5
    min_face_px: int = 48
    reliable_input_px: float = 16.0
    whole_frame_max_px: int = 640


@dataclass(frozen=True)
class Face:
    """A face: ``box`` (x, y, w, h) clipped to the frame; ``score``, the detector's confidence
    (None for a box the caller gave); ``extent``, the box unclipped (a face cut by the frame's
    edge keeps its proportions for the crop).
    """

    box: Box
    score: float | None
    extent: Box


class FaceDetector:
    """BlazeFace over the whole frame and, for large frames, over tiles; faces best score first."""

    def __init__(self, blazeface: BlazeFace, settings: DetectorSettings | None = None) -> None:
        self.blazeface = blazeface
        self.settings = settings or DetectorSettings()

    def detect(self, rgb: np.ndarray, min_face_px: int | None = None) -> list[Face]:
        """Faces in an H x W x 3 RGB frame, ordered by detector score, low scores dropped.

        ``min_face_px`` overrides the settings' smallest face for this frame (0: no tiling).
        """
        s = self.settings
        height, width = rgb.shape[:2]
        found = self.blazeface.detect(rgb, s.min_score)
        tile = self.tile_side(s.min_face_px if min_face_px is None else min_face_px)
        if tile and max(height, width) > max(tile, s.whole_frame_max_px):
            overlap = math.ceil(s.reliable_input_px * max(height, width) / INPUT_SIZE)
            for x0, y0, x1, y1 in tile_grid(width, height, tile, overlap):
                for d in self.blazeface.detect(rgb[y0:y1, x0:x1], s.min_score):
                    shifted = Detection(d.x1 + x0, d.y1 + y0, d.x2 + x0, d.y2 + y0, d.score)
                    if not _touches_cut(shifted, (x0, y0, x1, y1), width, height):
                        found.append(shifted)
            found = _merge(found)
        return [_face(d, width, height) for d in found if d.width >= 1 and d.height >= 1]

    def tile_side(self, min_face_px: int) -> int:
        """The side of a square tile in which a ``min_face_px`` face is found (0: no tiling)."""
        if min_face_px <= 0:
            return 0
        return int(INPUT_SIZE * min_face_px / self.settings.reliable_input_px)


def tile_grid(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of square tiles covering the frame, neighbours overlapping by >= ``overlap``."""
    xs = _starts(width, tile, overlap)
    ys = _starts(height, tile, overlap)
    return [(x, y, min(x + tile, width), min(y + tile, height)) for y in ys for x in xs]


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / max(1, tile - overlap))
    return [round(i * (size - tile) / (count - 1)) for i in range(count)] if count > 1 else [0]


#: A box this close (px) to a tile's cut edge may be a cut face.
_CUT_MARGIN = 2.0


def _touches_cut(d: Detection, tile: tuple[int, int, int, int], width: int, height: int) -> bool:
    x0, y0, x1, y1 = tile
    return (
        (x0 > 0 and d.x1 <= x0 + _CUT_MARGIN)
        or (y0 > 0 and d.y1 <= y0 + _CUT_MARGIN)
        or (x1 < width and d.x2 >= x1 - _CUT_MARGIN)
        or (y1 < height and d.y2 >= y1 - _CUT_MARGIN)
    )


def _merge(found: list[Detection]) -> list[Detection]:
    if len(found) < 2:
        return found
    corners = np.array([(d.x1, d.y1, d.x2, d.y2) for d in found], dtype=np.float64)
    return weighted_nms(corners, np.array([d.score for d in found]))


def _face(d: Detection, width: int, height: int) -> Face:
    x1, y1, x2, y2 = round(d.x1), round(d.y1), round(d.x2), round(d.y2)
    cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(width, x2), min(height, y2)
    clipped = (cx1, cy1, max(0, cx2 - cx1), max(0, cy2 - cy1))
    return Face(clipped, round(d.score, 4), (x1, y1, x2 - x1, y2 - y1))
