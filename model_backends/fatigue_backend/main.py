"""Driver fatigue backend: per-frame eye/mouth aspect ratios and head pose, per-stream PERCLOS and score."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from fatigue.face_landmarker import FaceLandmarker
from fatigue.frame_request import FrameOptions, frame_sample, measure_face, no_face
from fatigue.streams import StreamRegistry

from model_backends.base import BaseModelBackend, current_request, run_backend
from model_backends.base.images import request_image

logger = logging.getLogger(__name__)


class FatigueBackend(BaseModelBackend):
    """Driver fatigue from face landmarks (MediaPipe Face Mesh): EAR, MAR, head pose, PERCLOS, blinks, yawns."""

    name = "fatigue"
    version = "0.1.0"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refine = os.environ.get("FATIGUE_REFINE_LANDMARKS", "1") != "0"
        self.landmarker = FaceLandmarker(refine_landmarks=refine)
        self.streams = StreamRegistry(clock=time.monotonic)

    def model_name(self) -> str:
        return "mediapipe-face-mesh" + ("-attention" if self.landmarker.refine_landmarks else "")

    def initialize_model(self) -> None:
        self.landmarker.load()

    def process_inference(self, data: dict[str, Any]) -> dict[str, Any]:
        ctx = current_request()
        options = FrameOptions.parse(data, ctx.stream_id if ctx is not None else None)
        rgb = request_image(data)
        started = time.perf_counter()
        points = self.landmarker.landmarks(rgb)
        height, width = rgb.shape[:2]
        result = no_face() if points is None else measure_face(points, width, height, self.streams.thresholds)
        t = options.timestamp if options.timestamp is not None else time.monotonic()
        result["stream"] = self.streams.observe(options.stream_id, frame_sample(t, result))
        result["timestamp"] = t
        result["image_size"] = {"width": width, "height": height}
        if options.return_landmarks and points is not None:
            result["landmarks"] = points.round(2).tolist()
        result["inference_ms"] = round((time.perf_counter() - started) * 1000, 2)
        return result

    def cleanup(self) -> None:
        self.landmarker.close()


if __name__ == "__main__":
    run_backend(FatigueBackend)
