"""Reader for the raw GazeCapture layout, one folder per recording (one recording per subject).

Layout, as released at https://gazecapture.csail.mit.edu and read by the public
``pytorch/prepareDataset.py`` of CSAILVision/GazeCapture::

    raw_dir/NNNNN/frames/NNNNN.jpg       camera frames (480x640 portrait on iPhones)
    raw_dir/NNNNN/frames.json            ["00000.jpg", ...], one entry per frame
    raw_dir/NNNNN/appleFace.json         {X, Y, W, H, IsValid}: face box in frame pixels
    raw_dir/NNNNN/appleLeftEye.json      {X, Y, W, H, IsValid}: eye box relative to the face box
    raw_dir/NNNNN/appleRightEye.json     (left = the subject's left eye, image right side)
    raw_dir/NNNNN/faceGrid.json          {X, Y, W, H, IsValid}: 1-based cells of a 25x25 grid
    raw_dir/NNNNN/dotInfo.json           {DotNum, XPts, YPts, XCam, YCam, Time}; XCam/YCam in
                                         cm, camera coordinates (the gaze label)
    raw_dir/NNNNN/info.json              {TotalFrames, NumFaceDetections, NumEyeDetections,
                                         Dataset: "train"|"val"|"test", DeviceName}
    raw_dir/NNNNN/screen.json            {H, W, Orientation} per frame (optional here: no label
                                         depends on it)

Every per-frame file holds parallel lists with one entry per frame of ``frames.json``. A frame
is usable when the face, both eyes and the face grid are ``IsValid``, as in the public script.
Anything that would let a label silently attach to the wrong frame raises
:class:`DataFormatError` naming the file; ``skip_bad=True`` skips and counts instead.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# One exception type for every data-format problem, shared with the processed-layout reader so
# that callers catch a single class (the datamodule and dataset already use this one).
from tinytracker.data.processed import SPLITS, DataFormatError

__all__ = [
    "DataFormatError",
    "Boxes",
    "Recording",
    "RAW_LAYOUT_HELP",
    "list_recordings",
    "read_recording",
    "load_frame",
    "DeviceGeometry",
    "device_geometry",
]

log = logging.getLogger(__name__)

BOX_FILES = {
    "face": "appleFace.json",
    "left_eye": "appleLeftEye.json",
    "right_eye": "appleRightEye.json",
    "face_grid": "faceGrid.json",
}
BOX_KEYS = ("X", "Y", "W", "H", "IsValid")
DOT_KEYS = ("DotNum", "XPts", "YPts", "XCam", "YCam", "Time")
SCREEN_KEYS = ("H", "W", "Orientation")
RECORDING_NAME = re.compile(r"^\d{5}$")
FRAME_NAME = re.compile(r"^(\d{5})\.jpg$")

# Screen geometry of the devices in GazeCapture, from the dataset's ``apple_device_data.csv``
# (CSAILVision/GazeCapture): camera-to-screen offsets and screen size, all in millimetres.
# Orientation 1 (portrait): screen_x_mm = XCam_mm + to_screen_x_mm,
# screen_y_mm = -YCam_mm - to_screen_y_mm (the dataset's screen2cam/cam2screen code).
_APPLE_DEVICES_MM = {
    "iPhone 6s Plus": (23.54, 8.66, 68.36, 121.54),
    "iPhone 6s": (18.61, 8.04, 58.49, 104.05),
    "iPhone 6 Plus": (23.54, 8.65, 68.36, 121.54),
    "iPhone 6": (18.61, 8.03, 58.50, 104.05),
    "iPhone 5s": (25.85, 10.65, 51.70, 90.39),
    "iPhone 5c": (25.85, 10.64, 51.70, 90.39),
    "iPhone 5": (25.85, 10.65, 51.70, 90.39),
    "iPhone 4s": (14.96, 9.78, 49.92, 74.88),
    "iPad Mini": (60.70, 8.70, 121.30, 161.20),
    "iPad Air 2": (76.86, 7.37, 153.71, 203.11),
    "iPad Air": (74.40, 9.90, 149.00, 198.10),
    "iPad 4": (74.50, 10.50, 149.00, 198.10),
    "iPad 3": (74.50, 10.50, 149.00, 198.10),
    "iPad 2": (74.50, 10.50, 149.00, 198.10),
}

RAW_LAYOUT_HELP = (
    "expected a raw GazeCapture directory with one folder per recording named NNNNN (5 digits), "
    "each holding frames/NNNNN.jpg, frames.json, appleFace.json, appleLeftEye.json, "
    "appleRightEye.json, faceGrid.json, dotInfo.json, info.json (and optionally screen.json)"
)


@dataclass(frozen=True)
class DeviceGeometry:
    """Where a device's screen lies in camera coordinates (portrait), in centimetres."""

    name: str
    camera_to_screen_x_cm: float  # camera -> left screen edge, along the screen's x axis
    camera_to_screen_y_cm: float  # camera -> top screen edge, along the screen's y axis
    screen_w_cm: float
    screen_h_cm: float

    @property
    def xcam_range_cm(self) -> tuple[float, float]:
        return -self.camera_to_screen_x_cm, self.screen_w_cm - self.camera_to_screen_x_cm

    @property
    def ycam_range_cm(self) -> tuple[float, float]:
        return -self.camera_to_screen_y_cm - self.screen_h_cm, -self.camera_to_screen_y_cm


def device_geometry(name: str) -> DeviceGeometry | None:
    """Screen geometry of a GazeCapture ``DeviceName``, or None for an unknown device."""
    mm = _APPLE_DEVICES_MM.get(name)
    if mm is None:
        return None
    return DeviceGeometry(name, *(v / 10.0 for v in mm))


@dataclass(frozen=True)
class Boxes:
    """Per-frame boxes of one ``apple*.json`` / ``faceGrid.json`` file."""

    xywh: np.ndarray  # (N, 4) float64, as stored (eye boxes relative to the face box)
    valid: np.ndarray  # (N,) bool, IsValid


@dataclass
class Recording:
    """Labels of one raw recording, validated; frames are read lazily with :func:`load_frame`."""

    path: Path
    rec_num: int
    frame_index: np.ndarray  # (N,) int64, from the names in frames.json
    face: Boxes
    left_eye: Boxes
    right_eye: Boxes
    face_grid: Boxes
    dot_cm: np.ndarray  # (N, 2) float64, (XCam, YCam)
    dataset: str  # one of SPLITS
    device_name: str
    info: dict[str, Any]
    screen: dict[str, list] | None
    bad_frames: dict[int, str] = field(default_factory=dict)  # row -> why skipped (skip_bad)

    def __len__(self) -> int:
        return len(self.frame_index)

    @property
    def valid(self) -> np.ndarray:
        """Rows usable for training: all four IsValid flags set (public prepareDataset.py)."""
        ok = self.face.valid & self.left_eye.valid & self.right_eye.valid & self.face_grid.valid
        if self.bad_frames:
            ok = ok.copy()
            ok[list(self.bad_frames)] = False
        return ok

    def frame_path(self, row: int) -> Path:
        return self.path / "frames" / f"{int(self.frame_index[row]):05d}.jpg"


def list_recordings(raw_dir: str | Path) -> list[Path]:
    """Sorted recording folders (5-digit names) of a raw GazeCapture directory."""
    raw = Path(raw_dir)
    if not raw.is_dir():
        raise DataFormatError(f"raw_dir {raw} does not exist or is not a directory; "
                              f"{RAW_LAYOUT_HELP}")
    recs = sorted(p for p in raw.iterdir() if p.is_dir() and RECORDING_NAME.match(p.name))
    if not recs:
        raise DataFormatError(f"raw_dir {raw} holds no recording folders; {RAW_LAYOUT_HELP}")
    return recs


def read_recording(path: str | Path, skip_bad: bool = False) -> Recording:
    """Read and cross-check the JSON files of one recording.

    Problems that affect the whole recording (missing or malformed JSON, lists whose length
    differs from ``frames.json``, an unknown ``Dataset``) always raise :class:`DataFormatError`;
    the caller decides whether to skip the recording. A label that is unusable for one valid
    frame (non-finite value, empty box) raises too, or with ``skip_bad`` is recorded in
    ``Recording.bad_frames`` and excluded from ``Recording.valid``.
    """
    path = Path(path)
    if not RECORDING_NAME.match(path.name):
        raise DataFormatError(f"recording folder {path} must be named with 5 digits (NNNNN)")
    frame_index = _read_frames(path / "frames.json")
    n = len(frame_index)
    boxes = {key: _read_boxes(path / name, n) for key, name in BOX_FILES.items()}
    dot = _read_parallel(path / "dotInfo.json", DOT_KEYS, n)
    info = _read_info(path / "info.json", n)
    screen_path = path / "screen.json"
    screen = _read_parallel(screen_path, SCREEN_KEYS, n) if screen_path.exists() else None
    rec = Recording(
        path=path,
        rec_num=int(path.name),
        frame_index=frame_index,
        dot_cm=np.stack([_floats(dot, "XCam", path / "dotInfo.json"),
                         _floats(dot, "YCam", path / "dotInfo.json")], axis=1),
        dataset=info["Dataset"],
        device_name=str(info.get("DeviceName", "")),
        info=info,
        screen=screen,
        **boxes,
    )
    _check_valid_rows(rec, skip_bad)
    return rec


def load_frame(rec: Recording, row: int) -> np.ndarray:
    """Decode frame ``row`` as an RGB uint8 array, the way the public script does (PIL)."""
    path = rec.frame_path(row)
    if not path.is_file():
        raise DataFormatError(f"{path} is listed in {rec.path / 'frames.json'} but does not exist")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataFormatError(f"{path} is not a readable JPEG image ({err})") from err


# ----------------------------------------------------------------------------- JSON helpers
def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise DataFormatError(f"{path} is missing; {RAW_LAYOUT_HELP}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path} is not valid JSON ({err})") from err


def _read_frames(path: Path) -> np.ndarray:
    names = _load_json(path)
    if not isinstance(names, list):
        raise DataFormatError(f"{path} must be a JSON list of frame names like \"00000.jpg\", "
                              f"found {type(names).__name__}")
    index = []
    for i, name in enumerate(names):
        match = FRAME_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise DataFormatError(f"{path}: entry {i} is {name!r}, expected a frame name like "
                                  "\"00000.jpg\"")
        index.append(int(match.group(1)))
    if len(set(index)) != len(index):
        raise DataFormatError(f"{path} lists a frame more than once")
    return np.asarray(index, dtype=np.int64)


def _read_parallel(path: Path, keys: tuple[str, ...], n: int) -> dict[str, list]:
    """A dict of lists, one entry per frame of frames.json for every key in ``keys``."""
    data = _load_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path} must be a JSON object with lists {list(keys)}, "
                              f"found {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise DataFormatError(f"{path} lacks key(s) {missing}; expected lists {list(keys)}")
    for key in keys:
        values = data[key]
        if not isinstance(values, list) or len(values) != n:
            found = len(values) if isinstance(values, list) else type(values).__name__
            raise DataFormatError(
                f"{path}: {key} has {found} entries but frames.json lists {n} frames; "
                "expected one entry per frame (frames without labels cannot be used)"
            )
    return data


def _floats(data: dict[str, list], key: str, path: Path) -> np.ndarray:
    try:
        return np.asarray([math.nan if v is None else float(v) for v in data[key]])
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: {key} must hold numbers ({err})") from err


def _read_boxes(path: Path, n: int) -> Boxes:
    data = _read_parallel(path, BOX_KEYS, n)
    xywh = np.stack([_floats(data, k, path) for k in BOX_KEYS[:4]], axis=1)
    valid = _floats(data, "IsValid", path)
    if not np.isin(valid, (0.0, 1.0)).all():
        raise DataFormatError(f"{path}: IsValid must hold 0 or 1 for every frame")
    return Boxes(xywh=xywh, valid=valid.astype(bool))


def _read_info(path: Path, n: int) -> dict[str, Any]:
    info = _load_json(path)
    if not isinstance(info, dict):
        raise DataFormatError(f"{path} must be a JSON object, found {type(info).__name__}")
    if info.get("Dataset") not in SPLITS:
        raise DataFormatError(f"{path}: Dataset is {info.get('Dataset')!r}, expected one of "
                              f"{list(SPLITS)} (the subject's split)")
    total = info.get("TotalFrames")
    if total is not None and total != n:
        raise DataFormatError(f"{path}: TotalFrames is {total} but frames.json lists {n} frames")
    return info


def _check_valid_rows(rec: Recording, skip_bad: bool) -> None:
    """Every frame marked valid must carry finite labels and non-empty boxes."""
    valid = rec.valid
    finite = np.isfinite(rec.dot_cm).all(axis=1)
    problems = [(~finite, "dotInfo.json", "a non-finite XCam/YCam")]
    for key, name in BOX_FILES.items():
        xywh = getattr(rec, key).xywh
        ok = np.isfinite(xywh).all(axis=1) & (xywh[:, 2] >= 1) & (xywh[:, 3] >= 1)
        problems.append((~ok, name, "a non-finite box or one narrower than 1 px/cell"))
    for bad, name, what in problems:
        for row in np.flatnonzero(bad & valid):
            msg = (f"{rec.path / name}: frame {int(rec.frame_index[row]):05d} is marked valid "
                   f"but has {what}")
            if not skip_bad:
                raise DataFormatError(msg)
            if int(row) not in rec.bad_frames:
                log.warning("skipping frame: %s", msg)
                rec.bad_frames[int(row)] = msg
