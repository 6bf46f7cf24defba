"""Face geometry from MediaPipe face-mesh landmarks: eye/mouth aspect ratios, head pose, face box.

Pure numpy; landmarks are an (N, 3) array in pixels (x right, y down, z away from the camera,
z on the same scale as x), N = 468 or 478 in MediaPipe's mesh topology.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Eye contour points per eye as (outer/inner corner, upper 1, upper 2, inner/outer corner, lower 2, lower 1),
#: the order of Soukupova & Cech's eye aspect ratio. "Right" is the subject's right eye (image left).
RIGHT_EYE = (33, 160, 158, 133, 153, 144)
LEFT_EYE = (362, 385, 387, 263, 373, 380)
#: Inner-lip vertical pairs (upper, lower) and the mouth corners.
MOUTH_VERTICAL = ((81, 178), (13, 14), (311, 402))
MOUTH_CORNERS = (78, 308)

#: Points of MediaPipe's canonical face model (``canonical_face_model.obj``, centimetres, x right,
#: y up, z towards the camera) that expressions barely move: nose tip, nasion, forehead, chin,
#: outer eye corners and mouth corners, keyed by face-mesh index.
HEAD_MODEL_INDICES = (4, 6, 10, 152, 33, 263, 61, 291)
_CANONICAL_CM = np.array(
    [
        [0.0, -0.463170, 7.586580],
        [0.0, 2.473255, 5.788627],
        [0.0, 8.261778, 4.481535],
        [0.0, -9.403378, 4.264492],
        [-4.445859, 2.663991, 3.173422],
        [4.445859, 2.663991, 3.173422],
        [-2.456206, -4.342621, 4.283884],
        [2.456206, -4.342621, 4.283884],
    ]
)
#: The same points in the camera's axes (x right, y down, z away from the camera).
HEAD_MODEL = _CANONICAL_CM * np.array([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class HeadPose:
    """Head orientation in degrees.

    pitch > 0: chin up, < 0: head down (nodding); yaw > 0: nose turned towards the image's
    right; roll > 0: head tilted clockwise as seen in the image.
    """

    pitch: float
    yaw: float
    roll: float


@dataclass(frozen=True)
class FaceBox:
    """The face's bounding box in pixels (top-left corner, size)."""

    x: float
    y: float
    width: float
    height: float


def _dist(points: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(points[a, :2] - points[b, :2]))


def eye_aspect_ratio(points: np.ndarray, eye: tuple[int, int, int, int, int, int]) -> float:
    """(|p2-p6| + |p3-p5|) / (2 |p1-p4|): about 0.3 for an open eye, near 0 for a closed one."""
    p1, p2, p3, p4, p5, p6 = eye
    width = _dist(points, p1, p4)
    if width <= 0:
        return 0.0
    return (_dist(points, p2, p6) + _dist(points, p3, p5)) / (2.0 * width)


def mouth_aspect_ratio(points: np.ndarray) -> float:
    """Mean inner-lip opening over the mouth's width: near 0 closed, above ~0.6 in a yawn."""
    width = _dist(points, *MOUTH_CORNERS)
    if width <= 0:
        return 0.0
    return float(np.mean([_dist(points, a, b) for a, b in MOUTH_VERTICAL])) / width


def face_box(points: np.ndarray, width: int, height: int) -> FaceBox:
    """The landmarks' bounding box, clipped to the image."""
    x0, y0 = np.clip(points[:, :2].min(axis=0), 0, [width, height])
    x1, y1 = np.clip(points[:, :2].max(axis=0), 0, [width, height])
    return FaceBox(float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def rotation_to(model: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """The rotation R that best maps ``model`` points onto ``observed`` ones (Kabsch/Umeyama, any scale)."""
    a = model - model.mean(axis=0)
    b = observed - observed.mean(axis=0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    rotation: np.ndarray = u @ np.diag([1.0, 1.0, d]) @ vt
    return rotation


def pose_from_rotation(rotation: np.ndarray) -> HeadPose:
    """Pitch, yaw and roll (degrees) of a head rotated by ``rotation`` from facing the camera."""
    nose = -rotation[:, 2]  # the face's forward direction: towards the camera when R = I
    right = rotation[:, 0]
    pitch = math.degrees(math.atan2(-nose[1], -nose[2]))
    yaw = math.degrees(math.atan2(nose[0], math.hypot(nose[1], nose[2])))
    roll = math.degrees(math.atan2(right[1], right[0]))
    return HeadPose(pitch=pitch, yaw=yaw, roll=roll)


def head_pose(points: np.ndarray) -> HeadPose:
    """Head pose from the mesh's 3D landmarks fitted (rotation and scale) to the canonical face."""
    observed = points[list(HEAD_MODEL_INDICES), :3].astype(np.float64)
    return pose_from_rotation(rotation_to(HEAD_MODEL, observed))
