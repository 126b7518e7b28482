"""Device, frame and pinhole-camera geometry of the generator, and the eye's optics.

GazeCapture's camera coordinates in centimetres (camera at the origin, X to the subject's
right, Y up, Z towards the subject; the screen in the plane Z = 0). The head frame has its
origin between the eyes, +x to the subject's right and +y up; gaze angles are measured from
the head's forward direction (-Z). See :mod:`tinytracker.data.synthetic` for the sources.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tinytracker.data.gazecapture import device_geometry

FRAME_W_PX, FRAME_H_PX = 480, 640  # portrait, as GazeCapture's iPhone frames
DEVICE_NAME = "iPhone 6"
DEVICE = device_geometry(DEVICE_NAME)
SCREEN_POINTS = (375, 667)  # iPhone 6 logical screen size (W, H) in points, portrait
# Apple-like face box: a square of this side centred this far below the eyes, at IPD 6.3 cm
FACE_BOX_SIDE_CM, FACE_BOX_CENTRE_Y_CM = 12.0, -2.2
REFERENCE_IPD_CM = 6.3  # adult mean; face features scale with ipd_cm / REFERENCE_IPD_CM


def camera_to_image_px(x_cm: Any, y_cm: Any, z_cm: Any, focal_px: float) -> tuple[Any, Any]:
    """Pinhole projection into the (unmirrored) 480x640 frame, principal point at its centre."""
    return (FRAME_W_PX / 2 - focal_px * np.asarray(x_cm) / z_cm,
            FRAME_H_PX / 2 - focal_px * np.asarray(y_cm) / z_cm)


def gaze_angles_deg(eye_cm: Any, target_cm: Any, roll_deg: Any = 0.0) -> tuple[Any, Any]:
    """Yaw (+ toward the subject's right, +X) and pitch (+ up) of the ray eye -> target,
    relative to the head's forward direction (-Z) in the head frame rolled by ``roll_deg``."""
    d = np.asarray(target_cm, dtype=np.float64) - np.asarray(eye_cm, dtype=np.float64)
    r = np.radians(roll_deg)
    dx = d[..., 0] * np.cos(r) + d[..., 1] * np.sin(r)
    dy = -d[..., 0] * np.sin(r) + d[..., 1] * np.cos(r)
    fwd = -d[..., 2]
    return np.degrees(np.arctan2(dx, fwd)), np.degrees(np.arctan2(dy, np.hypot(dx, fwd)))


def optical_angles_deg(
    yaw_deg: Any, pitch_deg: Any, kappa_h_deg: Any, kappa_v_deg: Any, eye: str
) -> tuple[Any, Any]:
    """Visual axis -> optical axis: turned temporally by kappa_h, down by kappa_v."""
    temporal = {"right": 1.0, "left": -1.0}[eye]  # the right eye's temporal side is +X
    return yaw_deg + temporal * kappa_h_deg, pitch_deg - kappa_v_deg


def iris_offset_cm(yaw_deg: Any, pitch_deg: Any, gain_h_cm: float,
                   gain_v_cm: float) -> tuple[Any, Any]:
    """Iris centre displacement in the head frame (+x = subject's right, +y = up)."""
    return gain_h_cm * np.sin(np.radians(yaw_deg)), gain_v_cm * np.sin(np.radians(pitch_deg))


def screen_point_cm(eye_cm: Any, yaw_deg: Any, pitch_deg: Any, roll_deg: Any = 0.0) -> np.ndarray:
    """Where the ray from ``eye_cm`` with head-frame ``yaw``/``pitch`` meets the screen Z = 0."""
    eye = np.asarray(eye_cm, dtype=np.float64)
    yaw, pitch, r = np.radians(yaw_deg), np.radians(pitch_deg), np.radians(roll_deg)
    hx, hy = np.cos(pitch) * np.sin(yaw), np.sin(pitch)
    dz = -np.cos(pitch) * np.cos(yaw)
    dx = hx * np.cos(r) - hy * np.sin(r)
    dy = hx * np.sin(r) + hy * np.cos(r)
    t = -eye[..., 2] / dz
    return np.stack([eye[..., 0] + t * dx, eye[..., 1] + t * dy], axis=-1)


def eye_centres_cm(head_cm: np.ndarray, roll_deg: Any, ipd_cm: float) -> dict[str, np.ndarray]:
    """Camera positions of both eyes; the subject's right eye is at +X of the eye midpoint."""
    r = np.radians(roll_deg)
    axis = np.stack([np.cos(r), np.sin(r), np.zeros_like(r)], axis=-1) * (ipd_cm / 2)
    return {"right": head_cm + axis, "left": head_cm - axis}


def face_box_centre_cm(head_cm: np.ndarray, roll_deg: float, ipd_cm: float) -> np.ndarray:
    """Camera position of the face box's centre for the eye midpoint ``head_cm``."""
    r = math.radians(roll_deg)
    below_eyes_cm = FACE_BOX_CENTRE_Y_CM * ipd_cm / REFERENCE_IPD_CM
    return head_cm + np.array([-math.sin(r) * below_eyes_cm, math.cos(r) * below_eyes_cm, 0.0])


def keep_face_in_frame(head_cm: np.ndarray, roll_deg: float, ipd_cm: float, focal_px: float,
                       margin_px: float) -> np.ndarray:
    """Shift the head in X/Y (not Z) so the face box lies ``margin_px`` inside the frame."""
    head = np.array(head_cm, dtype=np.float64)
    z = head[2]
    half = focal_px * FACE_BOX_SIDE_CM * ipd_cm / REFERENCE_IPD_CM / z / 2 + margin_px
    u, v = camera_to_image_px(*face_box_centre_cm(head, roll_deg, ipd_cm), focal_px)
    u_ok = float(np.clip(u, half, FRAME_W_PX - half))
    v_ok = float(np.clip(v, half, FRAME_H_PX - half))
    head[0] -= (u_ok - u) * z / focal_px  # u = cx - f X / Z
    head[1] -= (v_ok - v) * z / focal_px
    return head
