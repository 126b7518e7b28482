"""Writer for the raw GazeCapture layout: the counterpart of :mod:`tinytracker.data.gazecapture`.

Used by the synthetic generator and by the guided calibration capture
(``tinytracker.calibrate.capture``), so every recording this project writes has the same
files, keys and JSON formatting as the ones it reads (see the layout in
:mod:`tinytracker.data.gazecapture`). Lists are parallel, one entry per frame of
``frames.json``; frames are ``frames/NNNNN.jpg``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tinytracker.data.gazecapture import BOX_FILES, DOT_KEYS, DataFormatError


def box_json(xywh: np.ndarray, valid: np.ndarray) -> dict[str, list]:
    """``appleFace.json``-style content: ``X, Y, W, H`` lists and ``IsValid`` (0/1)."""
    xywh = np.asarray(xywh)
    cols = {key: xywh[:, i].tolist() for i, key in enumerate("XYWH")}
    cols["IsValid"] = np.asarray(valid).astype(int).tolist()
    return cols


def dot_json(dot_num: np.ndarray, pts: np.ndarray, cam_cm: np.ndarray,
             time_s: np.ndarray) -> dict[str, list]:
    """``dotInfo.json``: dot number, position in screen points and in camera cm (the label),
    seconds since the dot appeared; values are written as given (round them first)."""
    pts, cam_cm = np.asarray(pts), np.asarray(cam_cm)
    return dict(zip(DOT_KEYS, (np.asarray(dot_num).tolist(), pts[:, 0].tolist(),
                               pts[:, 1].tolist(), cam_cm[:, 0].tolist(), cam_cm[:, 1].tolist(),
                               np.asarray(time_s).tolist()), strict=True))


def frame_name(index: int) -> str:
    return f"{index:05d}.jpg"


def write_frame(rec_dir: Path, index: int, image_bgr: np.ndarray, jpeg_quality: int) -> Path:
    """Encode a BGR uint8 frame as ``rec_dir/frames/NNNNN.jpg``."""
    ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise RuntimeError(f"cv2 could not encode frame {index} of {rec_dir}")
    path = rec_dir / "frames" / frame_name(index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())
    return path


def write_labels(rec_dir: Path, frames: int, boxes: Mapping[str, Mapping[str, list]],
                 dots: Mapping[str, list], info: Mapping[str, Any],
                 screen: Mapping[str, list] | None = None) -> None:
    """The JSON files of one recording of ``frames`` frames named ``00000.jpg`` ...

    ``boxes``: ``face``, ``left_eye``, ``right_eye``, ``face_grid`` -> :func:`box_json`
    content; ``dots``: :func:`dot_json` content; ``info``: ``info.json`` (``Dataset``,
    ``DeviceName``...); ``screen``: ``screen.json`` (``H``, ``W``, ``Orientation``) or None.
    Every list must have one entry per frame: a mismatch raises :class:`DataFormatError`
    before anything is written.
    """
    missing = sorted(set(BOX_FILES) - set(boxes))
    if missing:
        raise DataFormatError(f"{rec_dir}: no boxes given for {missing}")
    parts = {**{BOX_FILES[k]: boxes[k] for k in BOX_FILES}, "dotInfo.json": dots}
    if screen is not None:
        parts["screen.json"] = screen
    for name, content in parts.items():
        for key, values in content.items():
            if len(values) != frames:
                raise DataFormatError(f"{rec_dir / name}: {key} has {len(values)} entries for "
                                      f"{frames} frames")
    rec_dir.mkdir(parents=True, exist_ok=True)
    for name, content in parts.items():
        _write_json(rec_dir / name, content)
    _write_json(rec_dir / "frames.json", [frame_name(i) for i in range(frames)])
    _write_json(rec_dir / "info.json", dict(info))


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":")))
