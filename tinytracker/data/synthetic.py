"""Synthetic gaze dataset in the raw GazeCapture layout, generated deterministically from a seed.

``python -m tinytracker.data.synthetic out_dir=... seed=0 subjects=24 frames_per_subject=150``

One recording (folder ``NNNNN``) per subject, with every file of the raw layout described in
:mod:`tinytracker.data.gazecapture`, so :func:`tinytracker.data.prepare.prepare` processes it
like real data. Each subject draws from ``np.random.default_rng(SeedSequence([seed, 0, i]))``,
so a subject does not depend on how many others are generated or in which order, and the
same seed gives byte-identical files (cv2's JPEG encoder is deterministic).

Geometry (GazeCapture's camera coordinates in centimetres; Krafka et al., "Eye Tracking for
Everyone", CVPR 2016):

* Camera at the origin; X to the right as the subject sees the screen (the subject's right),
  Y up, Z from the device towards the subject. The screen lies in the plane Z = 0, below the
  camera (portrait, orientation 1). Device: iPhone 6, from GazeCapture's
  ``apple_device_data.csv``: camera 1.861 cm right of the screen's left edge and 0.803 cm
  above its top edge, screen 5.850 x 10.405 cm, so XCam in [-1.861, 3.989] and YCam in
  [-11.208, -0.803]; 375 x 667 screen points.
* Frames are 480 x 640 px (portrait, as GazeCapture's iPhone frames), pinhole camera with
  focal length ``focal_px`` = 600 px (horizontal field of view 2 atan(240/600) = 44 deg) and
  the principal point at the frame centre. The image is not mirrored: a point at camera
  (X, Y, Z) appears at u = 240 - f X / Z, v = 320 - f Y / Z, so the subject's left eye
  (GazeCapture's "left eye", ``appleLeftEye.json``) is on the image's right side.
* The face is a plane at Z = head distance, facing the screen (forward = -Z). Per subject:
  distance ~ U(25, 45) cm, eye midpoint X ~ N(1.06, 1.5) cm (the screen's centre line),
  Y ~ N(-4, 2) cm, roll ~ N(0, 3 deg); per frame jitter N(0, 0.3) cm on X, Y, Z and
  N(0, 1 deg) on roll; the position is clipped so the face box stays inside the frame.
  Interpupillary distance ~ N(6.3, 0.3) cm (adult mean 63 mm: Dodgson, "Variation and
  extrema of human interpupillary distance", SPIE 5291, 2004); face features scale with it.
* Targets: dots uniform over the screen (0.25 cm margin), ``frames_per_dot`` consecutive
  frames per dot (GazeCapture shows each dot for about 2 s, giving tens of frames; we use
  fewer frames per dot so a small set covers more positions). Label = the dot's XCam/YCam.

Gaze and the injected label noise (everything that separates the label from the image):

1. Fixation noise: the subject fixates F = dot + N(0, ``fixation_noise_cm`` = 0.3 cm) per axis,
   independently per frame.
2. Visual axis: each eye's line of sight from the eye centre to F.
3. Angle kappa: the optical axis (which the iris follows) is the visual axis turned
   temporally by kappa_h ~ N(5, 1.5) deg (one value per subject, mirrored between the eyes:
   right eye to +X, left eye to -X) and down by kappa_v ~ N(1.5, 0.7) deg (both eyes). The
   per-subject part cannot be learned without calibration; its horizontal part largely
   cancels between the two eyes, its vertical part does not.
4. Iris position: the iris centre sits in the eye opening, displaced in the head frame by
   (gain_h sin(yaw), gain_v sin(pitch)) of the optical axis relative to the head's forward
   direction, so a dot straight ahead of an eye (and no kappa/noise) gives a centred iris.
   A human eyeball has a radius of about 1.2 cm (axial length ~24 mm); that would move the
   iris by only ~2 px horizontally and ~3 px vertically in a 112 px face crop across this
   screen, so the gains are exaggerated to ``iris_gain_h_cm`` = 4.0 (3.3x) and
   ``iris_gain_v_cm`` = 2.2 (1.8x): with the defaults the iris travels ~6 px horizontally and
   ~5.5 px vertically at 112 px across the screen (median over subjects). In ~0.5% of frames
   (close subject, dot at a far corner) the iris centre leaves the eye opening and is partly
   hidden by the lids.
5. Labels are written rounded to 1e-4 cm.

SYNTHETIC.json reports, on the test subjects' valid frames: the error of always predicting
the training-set mean dot (the floor a model must beat) and the error left by noise sources
1 and 3 for an ideal reader of both irises that knows only the population-mean kappa (with
few test subjects this varies a lot with the seed: it is dominated by their kappa_v).

Rendering (cv2, sub-pixel anti-aliased polygons): per-subject background (gradient, blotchy
texture, random shapes; shifted per frame like a hand-held phone), shirt, neck, hair, a
skin-toned face ellipse (tone drawn over a wide range), eyebrows, nose, mouth, and eyes with
sclera, iris (radius 40% of the eye opening's height), pupil, eyelids and a fixed corneal
glint. Eye opening 2.8-3.2 x 1.3-1.6 cm (about 25% of the face-box width; the height is
exaggerated ~1.4x over a human's ~1 cm so the iris stays readable). Nuisances, per subject:
brightness, contrast, colour tint, a directional lighting gradient, sensor noise level; per
frame: brightness/contrast jitter, Gaussian blur (sigma 0-1.3 px), the noise pattern, head
roll and position, background shift. Blinks (``blink_prob`` = 3% of frames): eyes drawn
closed and both eye boxes marked invalid, as the real eye detector does.

Detector boxes (``appleFace.json``): a square of side 12 cm x IPD/6.3 centred 2.2 cm below the
eyes (brows to below the mouth, like Apple's face box), with N(0, 2%) jitter of position
and size; eye boxes: squares of side 1.25 x eye width around each eye centre, N(0, 3%)
jitter, stored relative to the face box. ``faceGrid.json`` follows from the face box via
:func:`tinytracker.data.geometry.face_grid_from_rect`.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import MISSING
from tqdm import tqdm

from tinytracker.cli import parse_args
from tinytracker.data.gazecapture import device_geometry
from tinytracker.data.gazecapture_write import box_json, dot_json, write_frame, write_labels
from tinytracker.data.geometry import face_grid_from_rect

log = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: kappa_v_std 1.0 -> 0.7 deg
FRAME_W_PX, FRAME_H_PX = 480, 640
DEVICE_NAME = "iPhone 6"
DEVICE = device_geometry(DEVICE_NAME)
SCREEN_POINTS = (375, 667)  # iPhone 6 logical screen size (W, H) in points, portrait
FPS = 15.0  # nominal frame rate for dotInfo.json Time
FACE_BOX_SIDE_CM, FACE_BOX_CY_CM = 12.0, -2.2  # at IPD 6.3 cm; see module docstring
EYE_BOX_SCALE = 1.25
BG_MARGIN_PX = 24  # background canvas margin for the per-frame hand-held shift
MARKER = ".tinytracker-synthetic"
SPLIT_STREAM, SUBJECT_STREAM = 1, 0


@dataclass
class SyntheticParams:
    """Every knob of the generator (defaults: see the module docstring for the sources)."""

    seed: int = 0
    subjects: int = 24  # one recording each
    frames_per_subject: int = 150
    frames_per_dot: int = 5  # consecutive frames showing the same dot
    val_fraction: float = 0.15  # of subjects; at least one
    test_fraction: float = 0.15  # of subjects; at least one
    focal_px: float = 600.0  # pinhole focal length for the 480x640 frame
    distance_min_cm: float = 25.0  # eye-to-screen-plane distance, per subject
    distance_max_cm: float = 45.0
    head_x_mean_cm: float = 1.06  # centre line of the iPhone 6 screen
    head_x_std_cm: float = 1.5
    head_y_mean_cm: float = -4.0  # eyes a little below the camera, over the screen's top half
    head_y_std_cm: float = 2.0
    head_jitter_cm: float = 0.3  # per frame, each of X, Y, Z
    roll_std_deg: float = 3.0  # per subject
    roll_jitter_deg: float = 1.0  # per frame
    fixation_noise_cm: float = 0.3  # per axis, per frame: gaze lands off the dot
    kappa_h_mean_deg: float = 5.0  # angle kappa, visual vs optical axis (temporal, mirrored)
    kappa_h_std_deg: float = 1.5
    kappa_v_mean_deg: float = 1.5
    kappa_v_std_deg: float = 0.7
    iris_gain_h_cm: float = 4.0  # iris travel per unit sine of yaw (exaggerated eyeball)
    iris_gain_v_cm: float = 2.2  # iris travel per unit sine of pitch
    blink_prob: float = 0.03  # closed eyes, eye boxes invalid
    blur_max_sigma_px: float = 1.3  # per frame sigma ~ U(0, max)
    jpeg_quality: int = 90  # of the raw frames (GazeCapture ships JPEG frames)

    def __post_init__(self) -> None:
        if self.subjects < 3:
            raise ValueError(f"subjects must be >= 3 (train, val and test need one each), "
                             f"got {self.subjects}")
        for key in ("frames_per_subject", "frames_per_dot"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0 < self.distance_min_cm <= self.distance_max_cm:
            raise ValueError("need 0 < distance_min_cm <= distance_max_cm, got "
                             f"{self.distance_min_cm}, {self.distance_max_cm}")


@dataclass
class GenerationReport:
    out_dir: Path
    subjects: int
    frames: int
    valid_frames: int
    blink_frames: int
    split_subjects: dict[str, int]
    mean_predictor_error_cm: float
    irreducible_error_cm: float
    seconds: float


# ============================================================================= physics
def camera_to_image_px(x_cm: Any, y_cm: Any, z_cm: Any, focal_px: float) -> tuple[Any, Any]:
    """Pinhole projection into the (unmirrored) 480x640 frame; see the module docstring."""
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


# ============================================================================= subjects
@dataclass(frozen=True)
class Look:
    """Appearance of one subject; lengths in cm in the head frame (origin between the eyes)."""

    ipd_cm: float
    eye_w_cm: float
    eye_h_cm: float
    face_a_cm: float
    face_b_cm: float
    face_cy_cm: float
    brow_y_cm: float
    brow_t_cm: float
    mouth_y_cm: float
    mouth_w_cm: float
    hair_style: int
    skin: tuple[int, int, int]  # BGR, as cv2 draws
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    sclera: tuple[int, int, int]
    lips: tuple[int, int, int]
    shirt: tuple[int, int, int]


@dataclass(frozen=True)
class Subject:
    """Per-subject constants; ``head_*_cm`` is the eye midpoint in camera coordinates."""

    index: int
    rec_name: str
    split: str
    distance_cm: float
    head_x_cm: float
    head_y_cm: float
    roll_deg: float
    kappa_h_deg: float
    kappa_v_deg: float
    look: Look


IRIS_COLOURS_BGR = [(30, 55, 95), (20, 35, 60), (40, 90, 110), (60, 120, 80), (150, 110, 60),
                    (120, 120, 110)]  # brown, dark brown, hazel, green, blue, grey


def assign_splits(params: SyntheticParams) -> list[str]:
    """Subject -> split, e.g. 70/15/15 with at least one validation and one test subject."""
    n = params.subjects
    n_val = max(1, round(params.val_fraction * n))
    n_test = max(1, round(params.test_fraction * n))
    if n_val + n_test >= n:
        raise ValueError(f"subjects={n} leaves no training subject with val_fraction="
                         f"{params.val_fraction} and test_fraction={params.test_fraction}")
    order = np.random.default_rng([params.seed, SPLIT_STREAM]).permutation(n)
    split = ["train"] * n
    for i in order[:n_test]:
        split[i] = "test"
    for i in order[n_test:n_test + n_val]:
        split[i] = "val"
    return split


def _colour(rng: np.random.Generator, base: Any, jitter: float) -> tuple[int, int, int]:
    c = np.clip(np.asarray(base, dtype=np.float64) + rng.uniform(-jitter, jitter, 3), 0, 255)
    return tuple(int(v) for v in c)


def sample_look(rng: np.random.Generator) -> Look:
    """Face proportions (cm, scaled with the IPD) and colours of one subject."""
    ipd = float(np.clip(rng.normal(6.3, 0.3), 5.6, 7.0))
    k = ipd / 6.3
    tone = rng.uniform()  # 0 = very dark, 1 = very light skin
    skin = np.array([35, 50, 85]) + tone * np.array([150, 160, 160])
    hair_dark = rng.uniform(0.1, 1.0)
    return Look(
        ipd_cm=ipd,
        eye_w_cm=rng.uniform(2.8, 3.2) * k,
        eye_h_cm=rng.uniform(1.3, 1.6) * k,
        face_a_cm=rng.uniform(6.2, 7.0) * k,
        face_b_cm=rng.uniform(8.4, 9.4) * k,
        face_cy_cm=-2.4 * k,
        brow_y_cm=rng.uniform(1.5, 1.9) * k,
        brow_t_cm=rng.uniform(0.22, 0.45) * k,
        mouth_y_cm=rng.uniform(-6.2, -5.6) * k,
        mouth_w_cm=rng.uniform(3.6, 5.0) * k,
        hair_style=int(rng.integers(0, 3)),
        skin=_colour(rng, skin, 12),
        hair=_colour(rng, np.array([40, 70, 110]) * (1 - hair_dark) + 15, 10),
        iris=_colour(rng, IRIS_COLOURS_BGR[int(rng.integers(len(IRIS_COLOURS_BGR)))], 15),
        sclera=_colour(rng, (225, 230, 235), 12),
        lips=_colour(rng, skin * np.array([0.75, 0.7, 1.0]), 10),
        shirt=_colour(rng, rng.uniform(20, 235, 3), 0),
    )


def sample_subject(params: SyntheticParams, index: int, split: str,
                   rng: np.random.Generator) -> Subject:
    look = sample_look(rng)
    distance = rng.uniform(params.distance_min_cm, params.distance_max_cm)
    head = np.array([rng.normal(params.head_x_mean_cm, params.head_x_std_cm),
                     rng.normal(params.head_y_mean_cm, params.head_y_std_cm), distance])
    roll = rng.normal(0.0, params.roll_std_deg)
    head = keep_face_in_frame(head, roll, look.ipd_cm, params.focal_px, margin_px=24)
    return Subject(
        index=index,
        rec_name=f"{index + 1:05d}",
        split=split,
        distance_cm=float(distance),
        head_x_cm=float(head[0]),
        head_y_cm=float(head[1]),
        roll_deg=float(roll),
        kappa_h_deg=float(rng.normal(params.kappa_h_mean_deg, params.kappa_h_std_deg)),
        kappa_v_deg=float(rng.normal(params.kappa_v_mean_deg, params.kappa_v_std_deg)),
        look=look,
    )


def _face_box_centre_cm(head_cm: np.ndarray, roll_deg: float, ipd_cm: float) -> np.ndarray:
    r, cy = math.radians(roll_deg), FACE_BOX_CY_CM * ipd_cm / 6.3
    return head_cm + np.array([-math.sin(r) * cy, math.cos(r) * cy, 0.0])


def keep_face_in_frame(head_cm: np.ndarray, roll_deg: float, ipd_cm: float, focal_px: float,
                       margin_px: float) -> np.ndarray:
    """Shift the head in X/Y (not Z) so the face box lies ``margin_px`` inside the frame."""
    head = np.array(head_cm, dtype=np.float64)
    z = head[2]
    half = focal_px * FACE_BOX_SIDE_CM * ipd_cm / 6.3 / z / 2 + margin_px
    u, v = camera_to_image_px(*_face_box_centre_cm(head, roll_deg, ipd_cm), focal_px)
    u_ok = float(np.clip(u, half, FRAME_W_PX - half))
    v_ok = float(np.clip(v, half, FRAME_H_PX - half))
    head[0] -= (u_ok - u) * z / focal_px  # u = cx - f X / Z
    head[1] -= (v_ok - v) * z / focal_px
    return head


# ============================================================================= per-frame state
@dataclass
class Frames:
    """Everything drawn for the frames of one subject, one row per frame."""

    dot_num: np.ndarray  # (N,)
    dot_cm: np.ndarray  # (N, 2) label, rounded as written
    fixation_cm: np.ndarray  # (N, 2)
    head_cm: np.ndarray  # (N, 3) eye midpoint
    roll_deg: np.ndarray  # (N,)
    iris_cm: dict[str, np.ndarray]  # eye -> (N, 2) head-frame iris offset
    optical_deg: dict[str, np.ndarray]  # eye -> (N, 2) yaw, pitch of the optical axis
    blink: np.ndarray  # (N,) bool
    nuisance: np.ndarray  # (N, 7) U(0, 1): contrast, brightness, blur, noise x/y, scene x/y
    detector: np.ndarray  # (N, 9) standard normal draws: face, left, right box (dx, dy, ds)


def sample_frames(params: SyntheticParams, subject: Subject, rng: np.random.Generator) -> Frames:
    n, look = params.frames_per_subject, subject.look
    n_dots = -(-n // params.frames_per_dot)
    (x0, x1), (y0, y1) = DEVICE.xcam_range_cm, DEVICE.ycam_range_cm
    dots = np.stack([rng.uniform(x0 + 0.25, x1 - 0.25, n_dots),
                     rng.uniform(y0 + 0.25, y1 - 0.25, n_dots)], axis=1).round(4)
    dot_num = np.arange(n) // params.frames_per_dot
    dot_cm = dots[dot_num]
    fixation = dot_cm + rng.normal(0.0, params.fixation_noise_cm, (n, 2))
    base = np.array([subject.head_x_cm, subject.head_y_cm, subject.distance_cm])
    head = base + rng.normal(0.0, params.head_jitter_cm, (n, 3))
    roll = subject.roll_deg + rng.normal(0.0, params.roll_jitter_deg, n)
    head = np.stack([keep_face_in_frame(h, r, look.ipd_cm, params.focal_px, 12)
                     for h, r in zip(head, roll, strict=True)])
    blink = rng.random(n) < params.blink_prob
    nuisance = rng.random((n, 7))
    detector = rng.standard_normal((n, 9))
    target = np.concatenate([fixation, np.zeros((n, 1))], axis=1)
    iris, optical = {}, {}
    for eye, centre in eye_centres_cm(head, roll, look.ipd_cm).items():
        yaw, pitch = gaze_angles_deg(centre, target, roll)
        yaw, pitch = optical_angles_deg(yaw, pitch, subject.kappa_h_deg, subject.kappa_v_deg, eye)
        optical[eye] = np.stack([yaw, pitch], axis=1)
        iris[eye] = np.stack(iris_offset_cm(yaw, pitch, params.iris_gain_h_cm,
                                            params.iris_gain_v_cm), axis=1)
    return Frames(dot_num, dot_cm, fixation, head, roll, iris, optical, blink, nuisance,
                  detector)


def ideal_reader_cm(params: SyntheticParams, subject: Subject, frames: Frames) -> np.ndarray:
    """Gaze point an ideal reader of both optical axes recovers with the population-mean
    kappa (no calibration): the mean of both eyes' corrected rays on the screen."""
    points = []
    centres = eye_centres_cm(frames.head_cm, frames.roll_deg, subject.look.ipd_cm)
    for eye, centre in centres.items():
        temporal = 1.0 if eye == "right" else -1.0
        yaw = frames.optical_deg[eye][:, 0] - temporal * params.kappa_h_mean_deg
        pitch = frames.optical_deg[eye][:, 1] + params.kappa_v_mean_deg
        points.append(screen_point_cm(centre, yaw, pitch, frames.roll_deg))
    return (points[0] + points[1]) / 2


# ============================================================================= rendering
class HeadProjection:
    """Head-frame points (cm, origin between the eyes, +x subject's right, +y up) -> pixels."""

    def __init__(self, head_cm: np.ndarray, roll_deg: float, focal_px: float) -> None:
        r = math.radians(roll_deg)
        self.c, self.s = math.cos(r), math.sin(r)
        self.head = head_cm
        self.px_per_cm = focal_px / head_cm[2]

    def __call__(self, pts_cm: np.ndarray) -> np.ndarray:
        # rotate by roll, translate to the head, project: u = cx - f X / Z, v = cy - f Y / Z
        k = self.px_per_cm
        rot = np.array([[-k * self.c, -k * self.s], [k * self.s, -k * self.c]])
        offset = np.array([FRAME_W_PX / 2 - k * self.head[0], FRAME_H_PX / 2 - k * self.head[1]])
        return pts_cm @ rot + offset

    def fixed(self, pts_cm: np.ndarray) -> np.ndarray:
        """cv2 fixed-point coordinates (``shift=4``: 1/16 px) for sub-pixel drawing."""
        return np.round(self(pts_cm) * 16).astype(np.int32)


@functools.lru_cache(maxsize=64)
def _unit_arc(t0: float, t1: float, n: int) -> np.ndarray:
    t = np.linspace(t0, t1, n, endpoint=(t1 - t0) < 2 * math.pi - 1e-9)
    arc = np.stack([np.cos(t), np.sin(t)], axis=1)
    arc.flags.writeable = False  # shared by every caller
    return arc


def _ellipse(cx: float, cy: float, a: float, b: float, t0: float = 0.0,
             t1: float = 2 * math.pi, n: int = 40) -> np.ndarray:
    """Points of an ellipse (arc from ``t0`` to ``t1``) in head-frame cm."""
    return _unit_arc(t0, t1, n) * (a, b) + (cx, cy)


def _fill(img: np.ndarray, proj: HeadProjection, polys: list[np.ndarray], colour: Any) -> None:
    cv2.fillPoly(img, [proj.fixed(p) for p in polys], colour, cv2.LINE_AA, 4)


def _line(img: np.ndarray, proj: HeadProjection, pts: np.ndarray, colour: Any,
          thick_cm: float) -> None:
    thick = max(1, round(thick_cm * proj.px_per_cm))
    cv2.polylines(img, [proj.fixed(pts)], False, colour, thick, cv2.LINE_AA, 4)


def _shade(colour: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(min(255, c * f)) for c in colour)


def draw_eye(img: np.ndarray, proj: HeadProjection, look: Look, centre_x_cm: float,
             iris_cm: np.ndarray, closed: bool) -> None:
    """One eye centred at head-frame (``centre_x_cm``, 0), iris displaced by ``iris_cm``."""
    a, b = look.eye_w_cm / 2, look.eye_h_cm / 2
    lash = _shade(look.hair, 0.5)
    crease = _ellipse(centre_x_cm, 0.1, a * 1.05, b + 0.35, 0.15 * math.pi, 0.85 * math.pi)
    _line(img, proj, crease, _shade(look.skin, 0.8), 0.08)
    if closed:
        # closed lid: lashes along a downward arc, no sclera or iris
        _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b * 0.5, math.pi, 2 * math.pi), lash, 0.14)
        return
    opening = _ellipse(centre_x_cm, 0.0, a, b)
    _fill(img, proj, [opening], look.sclera)
    ix, iy = centre_x_cm + float(iris_cm[0]), float(iris_cm[1])
    r_iris = 0.4 * look.eye_h_cm  # iris radius: 40% of the eye opening's height
    _fill(img, proj, [_ellipse(ix, iy, r_iris, r_iris)], _shade(look.iris, 0.6))
    _fill(img, proj, [_ellipse(ix, iy, 0.8 * r_iris, 0.8 * r_iris)], look.iris)
    _fill(img, proj, [_ellipse(ix, iy, 0.42 * r_iris, 0.42 * r_iris)], (15, 15, 15))
    # corneal glint of a fixed light source: fixed relative to the eye, not to the iris
    glint = 0.05 * look.eye_h_cm
    _fill(img, proj, [_ellipse(centre_x_cm - 0.12, 0.15, glint, glint, n=12)], (250, 250, 250))
    # eyelids: skin ring around the opening hides the part of the iris outside it
    reach = float(np.hypot(*iris_cm)) + r_iris + 0.05  # just enough to cover the iris
    _fill(img, proj, [_ellipse(centre_x_cm, 0.0, a + reach, b + reach), opening], look.skin)
    _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b, 0.0, math.pi), lash, 0.12)
    _line(img, proj, _ellipse(centre_x_cm, 0.0, a, b, math.pi, 2 * math.pi),
          _shade(look.skin, 0.7), 0.05)


def draw_subject(img: np.ndarray, proj: HeadProjection, look: Look,
                 iris: dict[str, np.ndarray], blink: bool) -> None:
    """Back to front: shirt, neck, hair, face, fringe, eyes (lids last), brows, nose, mouth."""
    skin_dark = _shade(look.skin, 0.82)
    k = look.ipd_cm / 6.3
    shoulders = np.array([[-22, -40], [-19, -16], [-6, -12.5], [6, -12.5], [19, -16],
                          [22, -40]]) * k
    _fill(img, proj, [shoulders], look.shirt)
    _fill(img, proj, [np.array([[-3.2, -6], [3.2, -6], [3.4, -14], [-3.4, -14]]) * k],
          skin_dark)
    fa, fb, fcy = look.face_a_cm, look.face_b_cm, look.face_cy_cm
    if look.hair_style > 0:
        _fill(img, proj, [_ellipse(0, fcy + 0.6 * k, fa + 0.6 * k, fb + 0.5 * k)], look.hair)
    _fill(img, proj, [_ellipse(0, fcy, fa, fb)], look.skin)
    if look.hair_style == 2:  # fringe on the forehead
        top = _ellipse(0, fcy, fa, fb, 0.12 * math.pi, 0.88 * math.pi)
        line = _ellipse(0, look.brow_y_cm + 2.2 * k, fa * 0.8, 0.8 * k, 0.88 * math.pi,
                        0.12 * math.pi)
        _fill(img, proj, [np.concatenate([top, line])], look.hair)
    for eye, sign in (("right", 1.0), ("left", -1.0)):
        cx = sign * look.ipd_cm / 2
        draw_eye(img, proj, look, cx, iris[eye], blink)
        t = np.linspace(-1.0, 1.0, 9)
        brow = np.stack([cx + sign * (0.1 + 1.7 * t) * k,
                         look.brow_y_cm + 0.35 * k * (1 - t**2)], axis=1)
        _line(img, proj, brow, look.hair, look.brow_t_cm)
    nose = np.array([[0.45, -0.6], [0.75, -3.0], [0.2, -3.5]]) * k
    _line(img, proj, nose, skin_dark, 0.12)
    for sign in (1.0, -1.0):
        _fill(img, proj, [_ellipse(sign * 0.5 * k, -3.45 * k, 0.28 * k, 0.13 * k, n=16)],
              _shade(look.skin, 0.45))
    mw = look.mouth_w_cm / 2
    _fill(img, proj, [_ellipse(0, look.mouth_y_cm, mw, 0.45 * k)], look.lips)
    lip_line = _ellipse(0, look.mouth_y_cm + 0.3 * k, mw, 0.3 * k, 1.05 * math.pi,
                        1.95 * math.pi, n=16)
    _line(img, proj, lip_line, _shade(look.lips, 0.5), 0.08)


def make_background(rng: np.random.Generator) -> np.ndarray:
    """A per-subject BGR canvas larger than the frame: gradient + blotchy texture + shapes."""
    h, w = FRAME_H_PX + 2 * BG_MARGIN_PX, FRAME_W_PX + 2 * BG_MARGIN_PX
    c0, c1 = rng.uniform(20, 235, 3), rng.uniform(20, 235, 3)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    canvas = (c0 + (c1 - c0) * ramp) * np.ones((1, w, 1), np.float32)
    coarse = rng.normal(0.0, rng.uniform(0, 40), (int(rng.integers(3, 12)),
                                                  int(rng.integers(3, 12)), 3))
    canvas += cv2.resize(coarse.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    img = np.clip(canvas, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 12))):
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        size = int(rng.integers(15, 160))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + size, y + int(rng.integers(15, 200))), colour, -1)
        else:
            cv2.circle(img, (x, y), size // 2, colour, -1, cv2.LINE_AA)
    return img


@dataclass(frozen=True)
class Camera:
    """Per-subject imaging conditions; per-frame variation comes from ``Frames.nuisance``."""

    brightness: float  # grey levels added
    gain: np.ndarray  # (H, W, 3) float32: contrast x colour tint x directional light ramp
    noise_sigma: float
    noise: np.ndarray  # (H + 2m, W + 2m, 3) float32 N(0, noise_sigma), sliced per frame


def sample_camera(rng: np.random.Generator) -> Camera:
    """Contrast 0.7-1.15, tint +-10% per channel, a linear light ramp of up to +-50% across
    the frame in a random direction, brightness -40..+30 and sensor noise sigma 2-7 grey
    levels (a phone sensor indoors)."""
    contrast = rng.uniform(0.7, 1.15)
    tint = rng.uniform(0.9, 1.1, 3)
    angle, strength = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.5)
    u = (np.arange(FRAME_W_PX) - FRAME_W_PX / 2) * (strength * math.cos(angle) / 400)
    v = (np.arange(FRAME_H_PX) - FRAME_H_PX / 2) * (strength * math.sin(angle) / 400)
    ramp = 1.0 + np.add.outer(v, u)
    gain = (ramp[:, :, None] * (contrast * tint)).astype(np.float32)
    brightness = float(rng.uniform(-40, 30))
    sigma = float(rng.uniform(2.0, 7.0))
    shape = (FRAME_H_PX + 2 * BG_MARGIN_PX, FRAME_W_PX + 2 * BG_MARGIN_PX, 3)
    noise = rng.standard_normal(shape, dtype=np.float32) * np.float32(sigma)
    return Camera(brightness, gain, sigma, noise)


class Workspace:
    """Frame-sized buffers reused across frames. Fresh multi-megabyte arrays per frame cost
    thousands of page faults each (measured: more system than user time), so every cv2 call
    below writes into one of these."""

    def __init__(self) -> None:
        shape = (FRAME_H_PX, FRAME_W_PX)
        self.image = np.empty((*shape, 3), np.uint8)
        self.blur = np.empty((*shape, 3), np.uint8)
        self.light = np.empty((*shape, 3), np.float32)
        self.out = np.empty((*shape, 3), np.uint8)


def apply_camera(img: np.ndarray, cam: Camera, nz: np.ndarray, blur_max_sigma_px: float,
                 ws: Workspace) -> np.ndarray:
    """Blur, lighting and sensor noise; ``nz`` holds this frame's uniform draws in [0, 1).
    Returns ``ws.out``, overwritten by the next call.

    Blur comes first, on uint8 (cheaper); the light ramp is smooth, so the order hardly
    matters. Per frame: contrast x0.95-1.05, brightness +-10, blur sigma, noise offset.
    """
    sigma = blur_max_sigma_px * nz[2]
    if sigma > 0.3:  # below that a 3-tap kernel is nearly the identity; save the time
        img = cv2.GaussianBlur(img, (0, 0), sigma, dst=ws.blur)
    out = cv2.multiply(img, cam.gain, dst=ws.light, scale=0.95 + 0.1 * nz[0], dtype=cv2.CV_32F)
    oy, ox = int(nz[3] * 2 * BG_MARGIN_PX), int(nz[4] * 2 * BG_MARGIN_PX)
    noise = cam.noise[oy:oy + FRAME_H_PX, ox:ox + FRAME_W_PX]
    cv2.addWeighted(out, 1.0, noise, 1.0, cam.brightness + (nz[1] - 0.5) * 20, dst=out)
    cv2.max(out, 0.0, dst=out)  # so that convertScaleAbs's abs is a no-op
    return cv2.convertScaleAbs(out, dst=ws.out)  # rounds and saturates at 255


# ============================================================================= writing
@dataclass
class SubjectResult:
    subject: Subject
    dot_cm: np.ndarray  # (N, 2) labels as written
    valid: np.ndarray  # (N,) all four IsValid flags
    fixation_cm: np.ndarray  # (N, 2)
    ideal_cm: np.ndarray  # (N, 2) see ideal_reader_cm


def detector_boxes(params: SyntheticParams, subject: Subject, frames: Frames) -> dict[str, Any]:
    """appleFace / appleLeftEye / appleRightEye / faceGrid JSON contents for all frames."""
    f, look = params.focal_px, subject.look
    k = look.ipd_cm / 6.3
    z = frames.head_cm[:, 2]
    jit = frames.detector
    centre = np.stack([_face_box_centre_cm(h, r, look.ipd_cm)
                       for h, r in zip(frames.head_cm, frames.roll_deg, strict=True)])
    u, v = camera_to_image_px(centre[:, 0], centre[:, 1], z, f)
    side = f * FACE_BOX_SIDE_CM * k / z * (1 + 0.02 * jit[:, 2])
    face_xy = np.stack([u + 0.02 * side * jit[:, 0], v + 0.02 * side * jit[:, 1]], 1)
    face_xy -= side[:, None] / 2
    face = np.concatenate([face_xy, side[:, None], side[:, None]], axis=1).round(2)
    out = {"face": box_json(face, np.ones(len(z), bool))}
    eyes = eye_centres_cm(frames.head_cm, frames.roll_deg, look.ipd_cm)
    for col, (key, eye) in enumerate((("left_eye", "left"), ("right_eye", "right")), start=1):
        d = jit[:, 3 * col:3 * col + 3]
        eu, ev = camera_to_image_px(eyes[eye][:, 0], eyes[eye][:, 1], z, f)
        s = f * EYE_BOX_SCALE * look.eye_w_cm / z * (1 + 0.03 * d[:, 2])
        xy = np.stack([eu + 0.03 * s * d[:, 0], ev + 0.03 * s * d[:, 1]], 1) - s[:, None] / 2
        box = np.concatenate([xy - face[:, :2], s[:, None], s[:, None]], axis=1).round(2)
        box[frames.blink] = 0.0  # the eye detector reports nothing for closed eyes
        out[key] = box_json(box, ~frames.blink)
    grid = np.array([face_grid_from_rect(FRAME_W_PX, FRAME_H_PX, *b) for b in face])
    out["face_grid"] = box_json(grid, np.ones(len(z), bool))
    return out


def _dot_json(frames: Frames, params: SyntheticParams) -> dict[str, list]:
    """dotInfo.json; XPts/YPts convert camera cm to screen points (orientation 1)."""
    x_mm, y_mm = frames.dot_cm[:, 0] * 10, frames.dot_cm[:, 1] * 10
    g = DEVICE
    x_pts = (x_mm + g.camera_to_screen_x_cm * 10) / (g.screen_w_cm * 10) * SCREEN_POINTS[0]
    y_pts = (-y_mm - g.camera_to_screen_y_cm * 10) / (g.screen_h_cm * 10) * SCREEN_POINTS[1]
    first = np.arange(len(frames.dot_num)) % params.frames_per_dot
    pts = np.stack([x_pts.round(4), y_pts.round(4)], axis=1)
    # seconds since the dot appeared
    return dot_json(frames.dot_num, pts, frames.dot_cm, ((first + 1) / FPS).round(4))


def render_frame(params: SyntheticParams, subject: Subject, frames: Frames, i: int,
                 camera: Camera, background: np.ndarray, ws: Workspace | None = None
                 ) -> np.ndarray:
    """Frame ``i`` of a subject as a BGR uint8 image (a buffer of ``ws`` when given)."""
    ws = ws or Workspace()
    nz = frames.nuisance[i]
    oy = BG_MARGIN_PX + int((nz[5] - 0.5) * BG_MARGIN_PX)  # hand-held shift of the scene
    ox = BG_MARGIN_PX + int((nz[6] - 0.5) * BG_MARGIN_PX)
    img = ws.image
    np.copyto(img, background[oy:oy + FRAME_H_PX, ox:ox + FRAME_W_PX])
    proj = HeadProjection(frames.head_cm[i], float(frames.roll_deg[i]), params.focal_px)
    iris = {eye: offsets[i] for eye, offsets in frames.iris_cm.items()}
    draw_subject(img, proj, subject.look, iris, bool(frames.blink[i]))
    return apply_camera(img, camera, nz, params.blur_max_sigma_px, ws)


def generate_subject(params: SyntheticParams, out_dir: Path, index: int,
                     split: str) -> SubjectResult:
    """Write recording ``index`` (folder ``index + 1`` as 5 digits) and return its labels."""
    seeds = np.random.SeedSequence([params.seed, SUBJECT_STREAM, index]).spawn(3)
    look_rng, frame_rng, camera_rng = (np.random.default_rng(s) for s in seeds)
    subject = sample_subject(params, index, split, look_rng)
    frames = sample_frames(params, subject, frame_rng)
    camera = sample_camera(camera_rng)
    background = make_background(camera_rng)
    rec_dir = out_dir / subject.rec_name
    n = params.frames_per_subject
    ws = Workspace()
    for i in range(n):
        image = render_frame(params, subject, frames, i, camera, background, ws)
        write_frame(rec_dir, i, image, params.jpeg_quality)
    write_labels(
        rec_dir, n, detector_boxes(params, subject, frames), _dot_json(frames, params),
        info={"TotalFrames": n, "NumFaceDetections": n,
              "NumEyeDetections": int((~frames.blink).sum()), "Dataset": split,
              "DeviceName": DEVICE_NAME},
        screen={"H": [SCREEN_POINTS[1]] * n, "W": [SCREEN_POINTS[0]] * n,
                "Orientation": [1] * n},
    )
    return SubjectResult(subject, frames.dot_cm, ~frames.blink, frames.fixation_cm,
                         ideal_reader_cm(params, subject, frames))


# ============================================================================= driver
def make_params(**values: Any) -> SyntheticParams:
    """``SyntheticParams`` from keyword values, naming any unknown key."""
    known = {f.name for f in fields(SyntheticParams)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown synthetic parameter(s) {unknown}; known: {sorted(known)}")
    return SyntheticParams(**values)


def generate(
    out_dir: str | os.PathLike,
    seed: int = 0,
    subjects: int = 24,
    frames_per_subject: int = 150,
    workers: int = 1,
    progress: bool = True,
    **params: Any,
) -> GenerationReport:
    """Generate the dataset into ``out_dir``; extra keyword arguments are
    :class:`SyntheticParams` fields.

    ``workers`` > 1 generates subjects in that many spawned processes (0: one per CPU); the
    output does not depend on it. The default stays in-process because spawning re-imports
    the caller's ``__main__``, which fails for scripts without a ``__name__`` guard."""
    start = time.perf_counter()
    p = make_params(seed=seed, subjects=subjects, frames_per_subject=frames_per_subject, **params)
    out = _claim_out_dir(Path(out_dir))
    splits = assign_splits(p)
    workers = workers or min(os.cpu_count() or 1, p.subjects)
    results = _run_subjects(p, out, splits, workers, progress)
    summary = summarise(p, results)
    (out / "SYNTHETIC.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    ref = summary["reference_errors_cm"]
    log.info("generated %d frames of %d subjects into %s; mean-predictor error %.3f cm, "
             "irreducible %.3f cm", summary["frames"], p.subjects, out, ref["mean_predictor"],
             ref["irreducible"])
    return GenerationReport(
        out_dir=out,
        subjects=p.subjects,
        frames=summary["frames"],
        valid_frames=summary["valid_frames"],
        blink_frames=summary["frames"] - summary["valid_frames"],
        split_subjects={s: len(v) for s, v in summary["splits"].items()},
        mean_predictor_error_cm=ref["mean_predictor"],
        irreducible_error_cm=ref["irreducible"],
        seconds=time.perf_counter() - start,
    )


def _claim_out_dir(out: Path) -> Path:
    """Use an empty or earlier synthetic directory; never delete someone else's files."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise FileExistsError(f"out_dir {out} is not empty and was not written by the "
                                  "synthetic generator; choose an empty or new directory")
        for child in out.iterdir():
            if child.is_dir() and len(child.name) == 5 and child.name.isdigit():
                shutil.rmtree(child)
        (out / "SYNTHETIC.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tinytracker.data.synthetic\n")
    return out


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; avoid oversubscription


def _run_subjects(params: SyntheticParams, out: Path, splits: list[str], workers: int,
                  progress: bool) -> list[SubjectResult]:
    bar = tqdm(total=params.subjects, desc="synthetic", unit="subject", disable=not progress)
    args = [(params, out, i, splits[i]) for i in range(params.subjects)]
    results = []
    with bar:
        if workers <= 1:
            for a in args:
                results.append(generate_subject(*a))
                bar.update()
            return results
        ctx = multiprocessing.get_context("spawn")  # fork would copy a caller's threads
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for result in pool.map(_generate_subject_star, args):
                results.append(result)
                bar.update()
    return results


def _generate_subject_star(args: tuple) -> SubjectResult:
    return generate_subject(*args)


def summarise(params: SyntheticParams, results: list[SubjectResult]) -> dict[str, Any]:
    """SYNTHETIC.json: parameters, version, subjects and the reference errors."""
    def rows(split: str, attr: str) -> np.ndarray:
        return np.concatenate([getattr(r, attr)[r.valid] for r in results
                               if r.subject.split == split])

    train_mean = rows("train", "dot_cm").mean(axis=0)
    dot, fix, ideal = (rows("test", a) for a in ("dot_cm", "fixation_cm", "ideal_cm"))

    def err(a: np.ndarray, b: np.ndarray) -> float:
        return round(float(np.linalg.norm(a - b, axis=1).mean()), 6)

    g = DEVICE
    return {
        "generator": "tinytracker.data.synthetic",
        "version": GENERATOR_VERSION,
        "params": asdict(params),
        "device": {"DeviceName": DEVICE_NAME, "frame_size_px": [FRAME_W_PX, FRAME_H_PX],
                   "screen_points": list(SCREEN_POINTS),
                   "xcam_range_cm": [round(v, 4) for v in g.xcam_range_cm],
                   "ycam_range_cm": [round(v, 4) for v in g.ycam_range_cm]},
        "splits": {s: [r.subject.rec_name for r in results if r.subject.split == s]
                   for s in ("train", "val", "test")},
        "subjects": {r.subject.rec_name: _subject_summary(r.subject) for r in results},
        "frames": int(sum(len(r.valid) for r in results)),
        "valid_frames": int(sum(r.valid.sum() for r in results)),
        "reference_errors_cm": {
            "mean_predictor": err(dot, train_mean[None, :]),
            "fixation_noise": err(fix, dot),
            "kappa_uncalibrated": err(ideal, fix),
            "irreducible": err(ideal, dot),
            "definitions": {
                "mean_predictor": "mean Euclidean distance between the test subjects' valid "
                                  "labels and the mean label of the training subjects",
                "fixation_noise": "mean distance between the fixated point and the dot",
                "kappa_uncalibrated": "mean distance between the fixated point and the point "
                                      "recovered from both eyes' optical axes using the "
                                      "population-mean kappa (no per-subject calibration)",
                "irreducible": "mean distance between that recovered point and the label: "
                               "the error of an ideal uncalibrated iris reader",
            },
        },
    }


def _subject_summary(s: Subject) -> dict[str, Any]:
    return {
        "Dataset": s.split,
        "distance_cm": round(s.distance_cm, 4),
        "head_xy_cm": [round(s.head_x_cm, 4), round(s.head_y_cm, 4)],
        "roll_deg": round(s.roll_deg, 4),
        "kappa_h_deg": round(s.kappa_h_deg, 4),
        "kappa_v_deg": round(s.kappa_v_deg, 4),
        "ipd_cm": round(s.look.ipd_cm, 4),
    }


# ============================================================================= CLI
@dataclass
class SyntheticArgs(SyntheticParams):
    """``python -m tinytracker.data.synthetic`` arguments."""

    out_dir: str = MISSING
    workers: int = 0  # processes; 0 = one per CPU; does not change the output


def main(argv: list[str] | None = None) -> None:
    prog = "tinytracker.data.synthetic"
    try:  # SyntheticParams.__post_init__ validates values while parse_args builds it
        args = parse_args(SyntheticArgs, argv, prog=prog)
        values = asdict(args)
        out_dir, workers = values.pop("out_dir"), values.pop("workers")
        report = generate(out_dir, workers=workers, **values)
    except (ValueError, FileExistsError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(json.dumps({k: str(v) if isinstance(v, Path) else v
                      for k, v in asdict(report).items()}, indent=1))


if __name__ == "__main__":
    main()
