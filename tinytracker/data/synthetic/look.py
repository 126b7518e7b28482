"""Synthetic frames of a face looking into the camera, at known head positions.

For ``predict``'s look-at-camera check: the generator's subjects and renderer, but every eye
fixates the camera itself (0, 0, 0), without angle kappa or fixation noise, so the true gaze
point is exactly (0, 0) cm, and the face box is the generator's Apple-like box. These frames
are not part of any training set (their draws use a stream of their own).
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from tinytracker.data.synthetic.optics import (
    eye_centres_cm,
    gaze_angles_deg,
    iris_offset_cm,
    keep_face_in_frame,
)
from tinytracker.data.synthetic.params import SyntheticParams
from tinytracker.data.synthetic.recording import detector_boxes
from tinytracker.data.synthetic.render import (
    make_background,
    render_frame,
    sample_imaging_conditions,
)
from tinytracker.data.synthetic.subjects import SubjectFrames, sample_subject

LOOK_STREAM = 7  # SeedSequence([seed, LOOK_STREAM, i]): apart from the training subjects'
# Eye midpoints (camera cm: x to the subject's right, y up, z away from the screen): centred
# over an iPhone screen, off to either side and low, from near to far.
HEADS_CM = ((1.0, -4.0, 30.0), (-3.0, -2.0, 35.0), (4.0, -7.0, 40.0))


def look_at_camera_frames(seed: int = 0, heads_cm: tuple[tuple[float, float, float], ...]
                          = HEADS_CM) -> list[tuple[str, np.ndarray, tuple[float, ...]]]:
    """``(name, RGB uint8 480x640 frame, Apple-like face box (x, y, w, h))`` per head."""
    params = SyntheticParams(seed=seed)
    out = []
    for i, head in enumerate(heads_cm):
        rng = np.random.default_rng([seed, LOOK_STREAM, i])
        subject = replace(sample_subject(params, i, "test", rng), kappa_h_deg=0.0,
                          kappa_v_deg=0.0, roll_deg=0.0)
        frames = _looking_at_camera(params, subject, np.asarray(head, float), rng)
        image = render_frame(params, subject, frames, 0, sample_imaging_conditions(rng),
                             make_background(rng))
        face = detector_boxes(params, subject, frames)["face"]
        box = tuple(float(face[k][0]) for k in ("X", "Y", "W", "H"))
        x, y, z = frames.head_cm[0]
        name = f"synthetic head ({x:+.1f}, {y:+.1f}, {z:.0f}) cm"
        out.append((name, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), box))
    return out


def _looking_at_camera(params: SyntheticParams, subject, head: np.ndarray,
                       rng: np.random.Generator) -> SubjectFrames:
    """One frame's draws with both eyes on the camera (the iris as :func:`sample_frames`
    places it for a fixation, with kappa 0)."""
    ipd = subject.appearance.ipd_cm
    head = keep_face_in_frame(head, 0.0, ipd, params.focal_px, 12)[None]
    roll = np.zeros(1)
    target = np.zeros((1, 3))
    iris, optical = {}, {}
    for eye, centre in eye_centres_cm(head, roll, ipd).items():
        yaw, pitch = gaze_angles_deg(centre, target, roll)
        optical[eye] = np.stack([yaw, pitch], axis=1)
        iris[eye] = np.stack(iris_offset_cm(yaw, pitch, params.iris_gain_h_cm,
                                            params.iris_gain_v_cm), axis=1)
    zero = np.zeros((1, 2))
    nuisance = rng.random((1, 7))
    nuisance[0, 2] = 0.0  # no blur
    return SubjectFrames(np.zeros(1, int), zero, zero, head, roll, iris, optical,
                         np.zeros(1, bool), nuisance, np.zeros((1, 9)))
