"""The per-person protocol: per subject, calibrate on ``points`` frames, test on the rest.

Every subject (one recording) of the split is treated alone: its calibration frames are chosen
by :func:`tinytracker.calibrate.pattern.select_frames` (dots closest to the calibration
pattern), a correction is fitted on them, and the error before and after the correction is
measured on that subject's *other* frames. Overall errors are means over all evaluated frames
(as ``evaluate``'s ``error_cm``); per-subject errors are that subject's mean.

``holdout="frames"`` evaluates on every other frame, including other frames of a calibration
dot (GazeCapture shows each dot for many frames); ``holdout="dots"`` only on frames whose dot
was not used for calibration: the stricter test of how the correction carries to new screen
positions, which needs recordings with more dots than ``points``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tinytracker.calibrate.pattern import select_frames
from tinytracker.correction.corrections import (
    FEATURE_KINDS,
    MIN_POINTS,
    CalibrationError,
    Correction,
    FitOptions,
    fit,
)

HOLDOUTS = ("frames", "dots")
DOT_DECIMALS = 4  # labels are written rounded to 1e-4 cm: equal to that, the same dot


@dataclass
class ModelOutputs:
    """A model's output on every frame of a split, with the labels and ids."""

    rec: np.ndarray  # (N,) recording (= subject) number
    frame: np.ndarray  # (N,) frame index
    target_cm: np.ndarray  # (N, 2) the dots
    gaze_cm: np.ndarray  # (N, 2) the model's output
    features: np.ndarray | None = None  # (N, D) penultimate features, when the model gives them

    def subjects(self) -> list[int]:
        return sorted(int(r) for r in np.unique(self.rec))

    def rows_of(self, rec: int) -> np.ndarray:
        return np.flatnonzero(self.rec == rec)

    def error_cm(self) -> float:
        return float(np.linalg.norm(self.gaze_cm - self.target_cm, axis=1).mean())


@dataclass
class SubjectResult:
    rec: int
    calibration_rows: np.ndarray
    eval_rows: np.ndarray
    correction: Correction
    error_before: np.ndarray  # (n_eval,) per frame, cm
    error_after: np.ndarray


def calibrate_subject(out: ModelOutputs, rec: int, kind: str, points: int,
                      options: FitOptions | None = None,
                      holdout: str = "frames") -> SubjectResult:
    if holdout not in HOLDOUTS:
        raise CalibrationError(f"holdout must be one of {HOLDOUTS}, got {holdout!r}")
    rows = out.rows_of(rec)
    if len(rows) < points + 1:
        raise CalibrationError(
            f"subject (recording) {rec:05d} has {len(rows)} frames; points={points} needs at "
            f"least {points + 1} ({points} to calibrate, 1 to evaluate)")
    cal = rows[select_frames(out.target_cm[rows], points, decimals=DOT_DECIMALS)]
    ev = np.setdiff1d(rows, cal)
    if holdout == "dots":
        dots = out.target_cm.round(DOT_DECIMALS)
        seen = (dots[ev][:, None, :] == dots[cal][None, :, :]).all(axis=2).any(axis=1)
        ev = ev[~seen]
        if len(ev) == 0:
            raise CalibrationError(
                f"subject (recording) {rec:05d}: holdout=dots leaves no frame to evaluate, all "
                f"its dots are among the {points} calibration points (use holdout=frames, or "
                "fewer points)")
    feats = out.features
    if kind in FEATURE_KINDS and feats is None:
        raise CalibrationError(f"kind={kind} needs the model's penultimate features, which this "
                               "model does not give (use kind=offset or affine; for an ONNX "
                               "file, export it with features=true)")
    try:
        correction = fit(kind, out.gaze_cm[cal], out.target_cm[cal],
                         None if feats is None else feats[cal], options)
    except CalibrationError as err:
        raise CalibrationError(f"subject (recording) {rec:05d}: {err}") from err
    corrected = correction.apply(out.gaze_cm[ev], None if feats is None else feats[ev])
    return SubjectResult(
        rec, cal, ev, correction,
        np.linalg.norm(out.gaze_cm[ev] - out.target_cm[ev], axis=1),
        np.linalg.norm(corrected - out.target_cm[ev], axis=1),
    )


def calibrate_subjects(out: ModelOutputs, kind: str, points: int,
                       options: FitOptions | None = None,
                       holdout: str = "frames") -> list[SubjectResult]:
    return [calibrate_subject(out, rec, kind, points, options, holdout)
            for rec in out.subjects()]


def summarise(results: Sequence[SubjectResult], out: ModelOutputs) -> dict[str, Any]:
    """``error_cm_before`` / ``error_cm_after`` overall and per subject."""
    before = np.concatenate([r.error_before for r in results])
    after = np.concatenate([r.error_after for r in results])
    b, a = float(before.mean()), float(after.mean())
    return {
        "error_cm_before": b,
        "error_cm_after": a,
        "improvement_cm": b - a,
        "improvement_fraction": (b - a) / b if b > 0 else 0.0,
        "subjects": len(results),
        "frames_evaluated": int(len(before)),
        "frames_calibration": int(sum(len(r.calibration_rows) for r in results)),
        "per_subject": {
            f"{r.rec:05d}": {
                "error_cm_before": float(r.error_before.mean()),
                "error_cm_after": float(r.error_after.mean()),
                "frames_evaluated": int(len(r.eval_rows)),
                "calibration_frames": [int(f) for f in out.frame[r.calibration_rows]],
                "calibration_targets_cm": out.target_cm[r.calibration_rows].round(4).tolist(),
            }
            for r in results
        },
    }


def error_curve(out: ModelOutputs, kinds: Sequence[str], points_list: Sequence[int],
                options: FitOptions | None = None, holdout: str = "frames") -> dict[str, Any]:
    """Overall error after calibration for every kind and number of points.

    ``error_cm_before[i]`` is the uncalibrated error on the frames evaluated at
    ``points_list[i]`` (they change with the number of calibration frames taken out).
    A kind that cannot run at some ``points`` (below its minimum, no features, too few frames)
    gets ``null`` there and the reason in ``notes``. ``best_kind`` is the kind with the lowest
    error at each ``points``, chosen on these same frames.
    """
    after: dict[str, list[float | None]] = {k: [] for k in kinds}
    before: list[float | None] = []
    notes: dict[str, str] = {}
    for points in points_list:
        before_k = None
        for kind in kinds:
            why = _cannot_run(out, kind, points)
            if why is None:
                try:
                    summary = summarise(
                        calibrate_subjects(out, kind, points, options, holdout), out)
                except CalibrationError as err:
                    why = str(err)
                else:
                    before_k = summary["error_cm_before"]
                    after[kind].append(summary["error_cm_after"])
            if why is not None:
                after[kind].append(None)
                notes[f"{kind}@{points}"] = why
        before.append(before_k)
    best_kind, best = [], []
    for i in range(len(points_list)):
        valid = {k: v[i] for k, v in after.items() if v[i] is not None}
        kind = min(valid, key=valid.__getitem__) if valid else None
        best_kind.append(kind)
        best.append(valid[kind] if kind else None)
    return {"points": list(points_list), "error_cm_before": before, "error_cm_after": after,
            "best_kind": best_kind, "error_cm_after_best": best, "notes": notes}


def _cannot_run(out: ModelOutputs, kind: str, points: int) -> str | None:
    if points < MIN_POINTS[kind]:
        return f"kind={kind} needs points >= {MIN_POINTS[kind]}"
    if kind in FEATURE_KINDS and out.features is None:
        return f"kind={kind} needs the model's penultimate features, which this model lacks"
    return None
