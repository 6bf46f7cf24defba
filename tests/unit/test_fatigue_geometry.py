"""Eye/mouth aspect ratios, face box and head pose from synthetic landmarks (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model_backends.fatigue_backend.fatigue.geometry import (
    HEAD_MODEL,
    HEAD_MODEL_INDICES,
    LEFT_EYE,
    MOUTH_CORNERS,
    MOUTH_VERTICAL,
    RIGHT_EYE,
    eye_aspect_ratio,
    face_box,
    head_pose,
    mouth_aspect_ratio,
)


def _eye(points: np.ndarray, eye: tuple[int, ...], x0: float, width: float, opening: float) -> None:
    p1, p2, p3, p4, p5, p6 = eye
    y = 100.0
    points[p1] = (x0, y, 0)
    points[p4] = (x0 + width, y, 0)
    points[p2] = (x0 + width / 3, y - opening / 2, 0)
    points[p3] = (x0 + 2 * width / 3, y - opening / 2, 0)
    points[p6] = (x0 + width / 3, y + opening / 2, 0)
    points[p5] = (x0 + 2 * width / 3, y + opening / 2, 0)


def test_eye_aspect_ratio_is_opening_over_width() -> None:
    points = np.zeros((478, 3))
    _eye(points, RIGHT_EYE, 10, 30, 9)
    _eye(points, LEFT_EYE, 60, 30, 0)
    assert eye_aspect_ratio(points, RIGHT_EYE) == pytest.approx(0.3)
    assert eye_aspect_ratio(points, LEFT_EYE) == pytest.approx(0.0)


def test_eye_aspect_ratio_of_a_degenerate_eye_is_zero() -> None:
    assert eye_aspect_ratio(np.zeros((468, 3)), RIGHT_EYE) == 0.0


def test_mouth_aspect_ratio_grows_with_the_lip_gap() -> None:
    points = np.zeros((468, 3))
    points[MOUTH_CORNERS[0]] = (0, 50, 0)
    points[MOUTH_CORNERS[1]] = (40, 50, 0)
    for gap, expected in ((0.0, 0.0), (28.0, 0.7)):
        for i, (upper, lower) in enumerate(MOUTH_VERTICAL):
            points[upper] = (10 + 10 * i, 50 - gap / 2, 0)
            points[lower] = (10 + 10 * i, 50 + gap / 2, 0)
        assert mouth_aspect_ratio(points) == pytest.approx(expected)


def test_face_box_spans_the_landmarks_and_is_clipped_to_the_image() -> None:
    points = np.array([[10.0, 20.0, 0.0], [50.0, 90.0, 3.0], [-5.0, 40.0, 0.0]])
    box = face_box(points, width=45, height=100)
    assert (box.x, box.y, box.width, box.height) == (0.0, 20.0, 45.0, 70.0)


def _rotation(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Camera axes (x right, y down, z away): pitch up, yaw to image right, roll clockwise."""
    p, y, r = (math.radians(a) for a in (-pitch, -yaw, roll))
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _posed_face(pitch: float, yaw: float, roll: float) -> np.ndarray:
    points = np.zeros((478, 3))
    posed = 9.0 * HEAD_MODEL @ _rotation(pitch, yaw, roll).T + np.array([320.0, 240.0, 0.0])
    points[list(HEAD_MODEL_INDICES)] = posed
    return points


def test_head_pose_of_a_face_looking_into_the_camera_is_zero() -> None:
    pose = head_pose(_posed_face(0, 0, 0))
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx((0, 0, 0), abs=1e-6)


@pytest.mark.parametrize(
    ("pitch", "yaw", "roll"),
    [(25, 0, 0), (-30, 0, 0), (0, 40, 0), (0, -35, 0), (0, 0, 20), (0, 0, -15)],
)
def test_head_pose_recovers_each_rotation_with_its_sign(pitch: float, yaw: float, roll: float) -> None:
    pose = head_pose(_posed_face(pitch, yaw, roll))
    assert (pose.pitch, pose.yaw, pose.roll) == pytest.approx((pitch, yaw, roll), abs=1e-6)


def test_head_pose_of_a_nodding_turned_tilted_head_is_close() -> None:
    pose = head_pose(_posed_face(-20, 15, 10))
    assert pose.pitch == pytest.approx(-20, abs=3)
    assert pose.yaw == pytest.approx(15, abs=3)
    assert pose.roll == pytest.approx(10, abs=3)
