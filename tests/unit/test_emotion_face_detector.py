"""Tiling and box merging of the emotion backend's face detector (pure geometry, no model)."""

from __future__ import annotations

import itertools

import pytest

np = pytest.importorskip("numpy")
pytest.importorskip("cv2", reason="the detector module needs OpenCV (emotion venv)")

from model_backends.emotion_backend.emotion_recognition.blazeface import anchor_centres, weighted_nms  # noqa: E402
from model_backends.emotion_backend.emotion_recognition.face_detector import tile_grid  # noqa: E402


@pytest.mark.parametrize(("width", "height"), [(1280, 720), (1920, 1080), (4000, 3000)])
def test_tiles_cover_the_frame_and_overlap_by_at_least_the_given_margin(width: int, height: int) -> None:
    tiles = tile_grid(width, height, 576, 160)

    covered = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in tiles:
        assert x1 - x0 <= 576 and y1 - y0 <= 576
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(b - a <= 576 - 160 for a, b in itertools.pairwise(xs))


def test_a_small_frame_is_one_tile() -> None:
    assert tile_grid(500, 400, 576, 160) == [(0, 0, 500, 400)]


def test_overlapping_boxes_merge_weighted_by_score_and_keep_the_best_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float64)
    scores = np.array([0.6, 0.9, 0.7])

    merged = weighted_nms(boxes, scores)

    assert [round(d.score, 2) for d in merged] == [0.9, 0.7]
    assert merged[0].x1 == pytest.approx((0 * 0.6 + 1 * 0.9) / 1.5)
    assert (merged[1].x1, merged[1].y2) == pytest.approx((50, 60))


def test_anchors_are_the_48_by_48_grid_centres_row_major() -> None:
    anchors = anchor_centres()

    assert anchors.shape == (2304, 2)
    assert anchors[0] == pytest.approx((0.5 / 48, 0.5 / 48))
    assert anchors[1] == pytest.approx((1.5 / 48, 0.5 / 48))
    assert anchors[48] == pytest.approx((0.5 / 48, 1.5 / 48))
