"""One subject's recording: draw, render and write every file of the raw GazeCapture layout
(frames, ``apple*.json``, ``faceGrid.json``, ``dotInfo.json``, ``info.json``, ``screen.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinytracker.data.gazecapture_write import box_json, dot_json, write_frame, write_labels
from tinytracker.data.geometry import face_grid_from_rect
from tinytracker.data.synthetic.optics import (
    DEVICE,
    DEVICE_NAME,
    FACE_BOX_SIDE_CM,
    FRAME_H_PX,
    FRAME_W_PX,
    REFERENCE_IPD_CM,
    SCREEN_POINTS,
    camera_to_image_px,
    eye_centres_cm,
    face_box_centre_cm,
)
from tinytracker.data.synthetic.params import SUBJECT_STREAM, SyntheticParams
from tinytracker.data.synthetic.render import (
    FrameBuffers,
    make_background,
    render_frame,
    sample_imaging_conditions,
)
from tinytracker.data.synthetic.subjects import (
    Subject,
    SubjectFrames,
    ideal_reader_cm,
    sample_frames,
    sample_subject,
)

FPS = 15.0  # nominal frame rate for dotInfo.json Time
EYE_BOX_SCALE = 1.25  # eye box side / eye opening width


@dataclass
class SubjectResult:
    """What the dataset summary needs of one written recording."""

    subject: Subject
    dot_cm: np.ndarray  # (N, 2) labels as written
    valid: np.ndarray  # (N,) all four IsValid flags
    fixation_cm: np.ndarray  # (N, 2)
    ideal_cm: np.ndarray  # (N, 2) see ideal_reader_cm


def detector_boxes(params: SyntheticParams, subject: Subject,
                   frames: SubjectFrames) -> dict[str, Any]:
    """appleFace / appleLeftEye / appleRightEye / faceGrid JSON contents for all frames."""
    f, appearance = params.focal_px, subject.appearance
    ipd_scale = appearance.ipd_cm / REFERENCE_IPD_CM
    z = frames.head_cm[:, 2]
    jit = frames.detector_jitter
    centre = np.stack([face_box_centre_cm(h, r, appearance.ipd_cm)
                       for h, r in zip(frames.head_cm, frames.roll_deg, strict=True)])
    u, v = camera_to_image_px(centre[:, 0], centre[:, 1], z, f)
    side = f * FACE_BOX_SIDE_CM * ipd_scale / z * (1 + 0.02 * jit[:, 2])
    face_xy = np.stack([u + 0.02 * side * jit[:, 0], v + 0.02 * side * jit[:, 1]], 1)
    face_xy -= side[:, None] / 2
    face = np.concatenate([face_xy, side[:, None], side[:, None]], axis=1).round(2)
    out = {"face": box_json(face, np.ones(len(z), bool))}
    eyes = eye_centres_cm(frames.head_cm, frames.roll_deg, appearance.ipd_cm)
    for col, (key, eye) in enumerate((("left_eye", "left"), ("right_eye", "right")), start=1):
        d = jit[:, 3 * col:3 * col + 3]
        eu, ev = camera_to_image_px(eyes[eye][:, 0], eyes[eye][:, 1], z, f)
        s = f * EYE_BOX_SCALE * appearance.eye_width_cm / z * (1 + 0.03 * d[:, 2])
        xy = np.stack([eu + 0.03 * s * d[:, 0], ev + 0.03 * s * d[:, 1]], 1) - s[:, None] / 2
        box = np.concatenate([xy - face[:, :2], s[:, None], s[:, None]], axis=1).round(2)
        box[frames.blink] = 0.0  # the eye detector reports nothing for closed eyes
        out[key] = box_json(box, ~frames.blink)
    grid = np.array([face_grid_from_rect(FRAME_W_PX, FRAME_H_PX, *b) for b in face])
    out["face_grid"] = box_json(grid, np.ones(len(z), bool))
    return out


def dot_info_json(frames: SubjectFrames, params: SyntheticParams) -> dict[str, list]:
    """dotInfo.json; XPts/YPts convert camera cm to screen points (orientation 1)."""
    x_mm, y_mm = frames.dot_cm[:, 0] * 10, frames.dot_cm[:, 1] * 10
    g = DEVICE
    x_pts = (x_mm + g.camera_to_screen_x_cm * 10) / (g.screen_w_cm * 10) * SCREEN_POINTS[0]
    y_pts = (-y_mm - g.camera_to_screen_y_cm * 10) / (g.screen_h_cm * 10) * SCREEN_POINTS[1]
    first = np.arange(len(frames.dot_num)) % params.frames_per_dot
    pts = np.stack([x_pts.round(4), y_pts.round(4)], axis=1)
    # seconds since the dot appeared
    return dot_json(frames.dot_num, pts, frames.dot_cm, ((first + 1) / FPS).round(4))


def generate_subject(params: SyntheticParams, out_dir: Path, index: int,
                     split: str) -> SubjectResult:
    """Write recording ``index`` (folder ``index + 1`` as 5 digits) and return its labels."""
    seeds = np.random.SeedSequence([params.seed, SUBJECT_STREAM, index]).spawn(3)
    subject_rng, frame_rng, imaging_rng = (np.random.default_rng(s) for s in seeds)
    subject = sample_subject(params, index, split, subject_rng)
    frames = sample_frames(params, subject, frame_rng)
    imaging = sample_imaging_conditions(imaging_rng)
    background = make_background(imaging_rng)
    rec_dir = out_dir / subject.rec_name
    n = params.frames_per_subject
    buffers = FrameBuffers()
    for i in range(n):
        image = render_frame(params, subject, frames, i, imaging, background, buffers)
        write_frame(rec_dir, i, image, params.jpeg_quality)
    write_labels(
        rec_dir, n, detector_boxes(params, subject, frames), dot_info_json(frames, params),
        info={"TotalFrames": n, "NumFaceDetections": n,
              "NumEyeDetections": int((~frames.blink).sum()), "Dataset": split,
              "DeviceName": DEVICE_NAME},
        screen={"H": [SCREEN_POINTS[1]] * n, "W": [SCREEN_POINTS[0]] * n,
                "Orientation": [1] * n},
    )
    return SubjectResult(subject, frames.dot_cm, ~frames.blink, frames.fixation_cm,
                         ideal_reader_cm(params, subject, frames))
