"""Fit the Haar -> Apple-like face box mapping on synthetic frames.

``python -m tinytracker.data.face_box_fit [seed=0] [subjects=40] [frames_per_subject=5]``

The synthetic generator knows each frame's Apple-like box (``appleFace.json``: a square of
12 cm x IPD / 6.3 centred 2.2 cm below the eyes, :mod:`tinytracker.data.synthetic`), and
OpenCV's Haar cascade can be run on the same frame. Over the frames where Haar's box overlaps
the generator's (IoU > :data:`MIN_IOU`; the rest are false detections), least squares give

* ``scale``: Apple side / Haar side (through the origin: ``sum(a h) / sum(h^2)``);
* ``dx``, ``dy``: the mean centre offset, Apple minus Haar, in Haar sides (the least-squares
  offset of centres measured in that unit).

:data:`tinytracker.data.face_detection.HAAR_TO_APPLE` holds the result of the default command;
``tests/test_face_box_fit.py`` refits on a smaller set and checks it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tinytracker.cli import parse_args
from tinytracker.data.face_detection import HAAR_TO_APPLE, BoxMapping, HaarDetector
from tinytracker.data.gazecapture import list_recordings, load_frame, read_recording

PROG = "tinytracker.data.face_box_fit"
MIN_IOU = 0.3  # below it a Haar box is a detection of something else


@dataclass
class FitArgs:
    seed: int = 0
    subjects: int = 40
    frames_per_subject: int = 5


@dataclass
class BoxFit:
    mapping: BoxMapping
    frames: int  # synthetic frames searched
    detected: int  # with a Haar face
    used: int  # whose Haar box overlaps the generator's (IoU > MIN_IOU)
    side_rms: float  # residual of the fitted side, relative to the Apple-like side
    centre_rms: float  # residual of the fitted centre, in Apple-like sides


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of ``(N, 4)`` ``(x, y, w, h)`` boxes, row by row."""
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y1 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def detect_boxes(raw_dir: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(Haar boxes, generator's boxes) of the frames with a Haar face, and all frames."""
    detector = HaarDetector(box_mapping=None)
    haar, apple, frames = [], [], 0
    for rec_dir in list_recordings(raw_dir):
        rec = read_recording(rec_dir)
        for row in range(len(rec.frame_index)):
            frames += 1
            found = detector(load_frame(rec, row)).face
            if found is not None:
                haar.append(found)
                apple.append(rec.face.xywh[row])
    return np.asarray(haar, float).reshape(-1, 4), np.asarray(apple, float).reshape(-1, 4), frames


def fit_mapping(haar: np.ndarray, apple: np.ndarray, frames: int) -> BoxFit:
    """Least-squares :class:`BoxMapping` from Haar boxes to the matching Apple-like boxes."""
    keep = iou(haar, apple) > MIN_IOU
    if keep.sum() < 5:
        raise ValueError(f"only {int(keep.sum())} Haar boxes overlap the generator's; generate "
                         "more frames (subjects=, frames_per_subject=)")
    h, a = haar[keep], apple[keep]
    scale = float((a[:, 2] * h[:, 2]).sum() / (h[:, 2] ** 2).sum())
    offset = ((a[:, :2] + a[:, 2:] / 2) - (h[:, :2] + h[:, 2:] / 2)) / h[:, 2:3]
    dx, dy = (float(v) for v in offset.mean(axis=0))
    side_err = (scale * h[:, 2] - a[:, 2]) / a[:, 2]
    centre_err = np.linalg.norm(offset - (dx, dy), axis=1) * h[:, 2] / a[:, 2]
    return BoxFit(BoxMapping(round(scale, 3), round(dx, 3), round(dy, 3)), frames, len(haar),
                  int(keep.sum()), float(np.sqrt((side_err ** 2).mean())),
                  float(np.sqrt((centre_err ** 2).mean())))


def refit(seed: int = 0, subjects: int = 40, frames_per_subject: int = 5) -> BoxFit:
    """Generate a synthetic set in a temporary folder, detect, and fit."""
    from tinytracker.data.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        generate(raw, seed=seed, subjects=subjects, frames_per_subject=frames_per_subject,
                 workers=1, progress=False)
        return fit_mapping(*detect_boxes(raw))


def main(argv: list[str] | None = None) -> BoxFit:
    args = parse_args(FitArgs, argv, prog=PROG)
    try:
        fit = refit(args.seed, args.subjects, args.frames_per_subject)
    except ValueError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(json.dumps({**asdict(fit), "shipped": asdict(HAAR_TO_APPLE)}, indent=1))
    return fit


if __name__ == "__main__":
    main()
