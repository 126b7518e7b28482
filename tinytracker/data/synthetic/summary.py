"""``SYNTHETIC.json``: the parameters, the device, the splits and the reference errors."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np

from tinytracker.data.synthetic.optics import (
    DEVICE,
    DEVICE_NAME,
    FRAME_H_PX,
    FRAME_W_PX,
    SCREEN_POINTS,
)
from tinytracker.data.synthetic.params import GENERATOR_VERSION, SyntheticParams
from tinytracker.data.synthetic.recording import SubjectResult
from tinytracker.data.synthetic.subjects import Subject

REFERENCE_ERROR_DEFINITIONS = {
    "mean_predictor": "mean Euclidean distance between the test subjects' valid "
                      "labels and the mean label of the training subjects",
    "fixation_noise": "mean distance between the fixated point and the dot",
    "kappa_uncalibrated": "mean distance between the fixated point and the point "
                          "recovered from both eyes' optical axes using the "
                          "population-mean kappa (no per-subject calibration)",
    "irreducible": "mean distance between that recovered point and the label: "
                   "the error of an ideal uncalibrated iris reader",
}


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
            "definitions": dict(REFERENCE_ERROR_DEFINITIONS),
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
        "ipd_cm": round(s.appearance.ipd_cm, 4),
    }
