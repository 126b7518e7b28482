"""Random draws of the generator: splits, each subject's face and pose, and every frame's gaze.

Everything here is numbers (no pixels): :mod:`.render` draws them, :mod:`.recording` writes
them as labels. See :mod:`tinytracker.data.synthetic` for the distributions and their sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tinytracker.data.synthetic.optics import (
    DEVICE,
    REFERENCE_IPD_CM,
    eye_centres_cm,
    gaze_angles_deg,
    iris_offset_cm,
    keep_face_in_frame,
    optical_angles_deg,
    screen_point_cm,
)
from tinytracker.data.synthetic.params import SPLIT_STREAM, SyntheticParams

BGR = tuple[int, int, int]  # a colour as cv2 draws it


@dataclass(frozen=True)
class Appearance:
    """Face proportions and colours of one subject; lengths in the head frame (origin between
    the eyes), scaled with the subject's interpupillary distance."""

    ipd_cm: float
    eye_width_cm: float  # eye opening (an ellipse)
    eye_height_cm: float
    face_half_width_cm: float  # face ellipse semi-axes
    face_half_height_cm: float
    face_centre_y_cm: float
    brow_y_cm: float  # height of the brow arch's ends above the eye line
    brow_thickness_cm: float
    mouth_y_cm: float
    mouth_width_cm: float
    hair_style: int  # 0 none, 1 hair behind the face, 2 also a fringe
    skin_bgr: BGR
    hair_bgr: BGR
    iris_bgr: BGR
    sclera_bgr: BGR
    lips_bgr: BGR
    shirt_bgr: BGR


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
    appearance: Appearance


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


def _colour(rng: np.random.Generator, base: Any, jitter: float) -> BGR:
    c = np.clip(np.asarray(base, dtype=np.float64) + rng.uniform(-jitter, jitter, 3), 0, 255)
    return tuple(int(v) for v in c)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Face proportions (cm, scaled with the IPD) and colours of one subject."""
    ipd = float(np.clip(rng.normal(6.3, 0.3), 5.6, 7.0))
    scale = ipd / REFERENCE_IPD_CM
    tone = rng.uniform()  # 0 = very dark, 1 = very light skin
    skin = np.array([35, 50, 85]) + tone * np.array([150, 160, 160])
    hair_dark = rng.uniform(0.1, 1.0)
    # keyword order = draw order: changing it changes every generated set
    return Appearance(
        ipd_cm=ipd,
        eye_width_cm=rng.uniform(2.8, 3.2) * scale,
        eye_height_cm=rng.uniform(1.3, 1.6) * scale,
        face_half_width_cm=rng.uniform(6.2, 7.0) * scale,
        face_half_height_cm=rng.uniform(8.4, 9.4) * scale,
        face_centre_y_cm=-2.4 * scale,
        brow_y_cm=rng.uniform(1.5, 1.9) * scale,
        brow_thickness_cm=rng.uniform(0.22, 0.45) * scale,
        mouth_y_cm=rng.uniform(-6.2, -5.6) * scale,
        mouth_width_cm=rng.uniform(3.6, 5.0) * scale,
        hair_style=int(rng.integers(0, 3)),
        skin_bgr=_colour(rng, skin, 12),
        hair_bgr=_colour(rng, np.array([40, 70, 110]) * (1 - hair_dark) + 15, 10),
        iris_bgr=_colour(rng, IRIS_COLOURS_BGR[int(rng.integers(len(IRIS_COLOURS_BGR)))], 15),
        sclera_bgr=_colour(rng, (225, 230, 235), 12),
        lips_bgr=_colour(rng, skin * np.array([0.75, 0.7, 1.0]), 10),
        shirt_bgr=_colour(rng, rng.uniform(20, 235, 3), 0),
    )


def sample_subject(params: SyntheticParams, index: int, split: str,
                   rng: np.random.Generator) -> Subject:
    appearance = sample_appearance(rng)
    distance = rng.uniform(params.distance_min_cm, params.distance_max_cm)
    head = np.array([rng.normal(params.head_x_mean_cm, params.head_x_std_cm),
                     rng.normal(params.head_y_mean_cm, params.head_y_std_cm), distance])
    roll = rng.normal(0.0, params.roll_std_deg)
    head = keep_face_in_frame(head, roll, appearance.ipd_cm, params.focal_px, margin_px=24)
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
        appearance=appearance,
    )


@dataclass
class SubjectFrames:
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
    detector_jitter: np.ndarray  # (N, 9) standard normal: face, left, right box (dx, dy, ds)


def sample_frames(params: SyntheticParams, subject: Subject,
                  rng: np.random.Generator) -> SubjectFrames:
    n, ipd_cm = params.frames_per_subject, subject.appearance.ipd_cm
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
    head = np.stack([keep_face_in_frame(h, r, ipd_cm, params.focal_px, 12)
                     for h, r in zip(head, roll, strict=True)])
    blink = rng.random(n) < params.blink_prob
    nuisance = rng.random((n, 7))
    detector_jitter = rng.standard_normal((n, 9))
    target = np.concatenate([fixation, np.zeros((n, 1))], axis=1)
    iris, optical = {}, {}
    for eye, centre in eye_centres_cm(head, roll, ipd_cm).items():
        yaw, pitch = gaze_angles_deg(centre, target, roll)
        yaw, pitch = optical_angles_deg(yaw, pitch, subject.kappa_h_deg, subject.kappa_v_deg, eye)
        optical[eye] = np.stack([yaw, pitch], axis=1)
        iris[eye] = np.stack(iris_offset_cm(yaw, pitch, params.iris_gain_h_cm,
                                            params.iris_gain_v_cm), axis=1)
    return SubjectFrames(dot_num, dot_cm, fixation, head, roll, iris, optical, blink, nuisance,
                         detector_jitter)


def ideal_reader_cm(params: SyntheticParams, subject: Subject,
                    frames: SubjectFrames) -> np.ndarray:
    """Gaze point an ideal reader of both optical axes recovers with the population-mean
    kappa (no calibration): the mean of both eyes' corrected rays on the screen."""
    points = []
    centres = eye_centres_cm(frames.head_cm, frames.roll_deg, subject.appearance.ipd_cm)
    for eye, centre in centres.items():
        temporal = 1.0 if eye == "right" else -1.0
        yaw = frames.optical_deg[eye][:, 0] - temporal * params.kappa_h_mean_deg
        pitch = frames.optical_deg[eye][:, 1] + params.kappa_v_mean_deg
        points.append(screen_point_cm(centre, yaw, pitch, frames.roll_deg))
    return (points[0] + points[1]) / 2
