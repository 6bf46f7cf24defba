"""The fatigue backend's request options and per-frame answer shape (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from model_backends.base.errors import BadRequestError
from model_backends.fatigue_backend.fatigue.frame_request import FrameOptions, frame_sample, measure_face, no_face
from model_backends.fatigue_backend.fatigue.geometry import HEAD_MODEL, HEAD_MODEL_INDICES
from model_backends.fatigue_backend.fatigue.thresholds import FatigueThresholds


def test_the_request_stream_id_wins_over_the_data_field() -> None:
    assert FrameOptions.parse({"stream_id": "data"}, "envelope").stream_id == "envelope"
    assert FrameOptions.parse({"stream_id": "data"}, None).stream_id == "data"
    assert FrameOptions.parse({}, None).stream_id == "default"


def test_timestamp_and_landmarks_options_are_read() -> None:
    options = FrameOptions.parse({"timestamp": 12, "return_landmarks": True}, None)
    assert (options.timestamp, options.return_landmarks) == (12.0, True)
    assert FrameOptions.parse({}, None).timestamp is None


@pytest.mark.parametrize(
    "data",
    [
        {"timestamp": "now"},
        {"timestamp": True},
        {"timestamp": float("nan")},
        {"return_landmarks": "yes"},
        {"stream_id": 3},
    ],
)
def test_invalid_options_are_bad_requests(data: dict[str, object]) -> None:
    with pytest.raises(BadRequestError):
        FrameOptions.parse(data, None)


def test_measures_of_a_face_feed_the_stream() -> None:
    points = np.zeros((478, 3))
    points[:, 0] = np.linspace(100, 200, 478)
    points[:, 1] = np.linspace(50, 180, 478)
    points[list(HEAD_MODEL_INDICES)] = 4 * HEAD_MODEL + [150, 110, 0]
    measures = measure_face(points, 640, 480, FatigueThresholds())
    assert measures["face_found"] is True
    assert measures["landmark_count"] == 478
    assert measures["face_box"] == {"x": 100.0, "y": 50.0, "width": 100.0, "height": 130.0}
    assert set(measures["head_pose"]) == {"pitch", "yaw", "roll"}
    sample = frame_sample(3.0, measures)
    assert (sample.t, sample.ear, sample.face_found) == (3.0, measures["ear"]["mean"], True)


def test_a_frame_without_a_face_is_an_answer_not_an_error() -> None:
    answer = no_face()
    assert answer["face_found"] is False
    assert frame_sample(1.0, answer).face_found is False
