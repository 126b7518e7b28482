"""Reader for the processed GazeCapture layout of the public iTracker PyTorch code.

Layout (CSAILVision/GazeCapture ``pytorch/prepareDataset.py``)::

    root/metadata.mat                    labelRecNum, frameIndex, labelDotXCam, labelDotYCam,
                                         labelFaceGrid (N x 4), labelTrain, labelVal, labelTest
    root/NNNNN/appleFace/NNNNN.jpg       face crop of recording NNNNN, frame NNNNN
    root/NNNNN/appleLeftEye/NNNNN.jpg
    root/NNNNN/appleRightEye/NNNNN.jpg

A directory written by the public script loads as is. Written by our ``prepare`` only, and
optional: ``recordings.json`` (device names); in ``metadata.mat`` ``labelFaceBox`` (N x 4,
the ``appleFace`` box ``X, Y, W, H`` in frame pixels) and ``labelFrameSize`` (N x 2, frame
width and height), which give the exact ``face_box`` field (``model.position=late``); and
``root/NNNNN/frames/NNNNN.jpg``, the full camera frame (a hard link to the raw file where the
file system allows), for ``model.position=frame``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.io

log = logging.getLogger(__name__)

METADATA_KEYS = (
    "labelRecNum",
    "frameIndex",
    "labelDotXCam",
    "labelDotYCam",
    "labelFaceGrid",
    "labelTrain",
    "labelVal",
    "labelTest",
)
CROP_FOLDERS = {"face": "appleFace", "eye_left": "appleLeftEye", "eye_right": "appleRightEye"}
# Every stored image by batch field: the crops, and the full frame (our prepare only).
IMAGE_FOLDERS = {**CROP_FOLDERS, "frame": "frames"}
# Extra metadata.mat keys of our prepare (absent in the public script's output).
FACE_BOX_KEYS = ("labelFaceBox", "labelFrameSize")
SPLITS = ("train", "val", "test")  # GazeCapture's info.json "Dataset"

LAYOUT_HELP = (
    "expected a processed GazeCapture directory holding metadata.mat (keys: "
    + ", ".join(METADATA_KEYS)
    + ") and per recording NNNNN/appleFace/, NNNNN/appleLeftEye/, NNNNN/appleRightEye/ JPEGs "
    "(run `python -m tinytracker.data.prepare raw_dir=... out_dir=...` on the raw dataset), "
    "or a raw GazeCapture directory of recordings (NNNNN/frames.json, dotInfo.json, ...)"
)


class DataFormatError(ValueError):
    """A data file is missing, unreadable or disagrees with the others; the message names it."""


def crop_path(root: Path, rec: int, frame: int, field_name: str) -> Path:
    """Path of one crop, exactly as the public loader builds it."""
    return root / f"{rec:05d}" / IMAGE_FOLDERS[field_name] / f"{frame:05d}.jpg"


def check_split(split: str, error: type[Exception] = ValueError, key: str = "split") -> str:
    """``split`` when it is one of :data:`SPLITS`; else ``error`` naming ``key``."""
    if split not in SPLITS:
        raise error(f"{key} must be {', '.join(SPLITS[:-1])} or {SPLITS[-1]}, got {split!r}")
    return split


@dataclass
class ProcessedIndex:
    """Labels of every frame of a processed directory, as flat arrays (one row a frame)."""

    root: Path
    rec_num: np.ndarray  # (N,) int64
    frame_index: np.ndarray  # (N,) int64
    gaze_cm: np.ndarray  # (N, 2) float32, (XCam, YCam)
    face_grid: np.ndarray  # (N, 4) int64, 1-based (X, Y, W, H)
    split: np.ndarray  # (N,) '<U5' in SPLITS
    device: dict[int, str] = field(default_factory=dict)  # recording -> DeviceName, if known
    # (N, 4) float64 appleFace (X, Y, W, H) px and (N, 2) int64 frame (width, height), when
    # metadata.mat records them (FACE_BOX_KEYS; our prepare does)
    face_box_px: np.ndarray | None = None
    frame_size: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rec_num)

    def select(self, mask: np.ndarray) -> ProcessedIndex:
        return ProcessedIndex(
            self.root,
            self.rec_num[mask],
            self.frame_index[mask],
            self.gaze_cm[mask],
            self.face_grid[mask],
            self.split[mask],
            self.device,
            None if self.face_box_px is None else self.face_box_px[mask],
            None if self.frame_size is None else self.frame_size[mask],
        )

    def devices_by_rec(self) -> dict[int, str]:
        """Recording -> device name, for the recordings in this index that have one."""
        recs = (int(r) for r in np.unique(self.rec_num))
        return {r: self.device[r] for r in recs if r in self.device}

    def split_of(self, name: str) -> ProcessedIndex:
        return self.select(self.split == name)


def load_index(root: str | os.PathLike) -> ProcessedIndex:
    """Read ``root/metadata.mat`` the way the public loader does and validate it."""
    root = Path(root)
    meta_path = root / "metadata.mat"
    if not meta_path.is_file():
        raise DataFormatError(f"{meta_path} not found: {LAYOUT_HELP}")
    try:
        meta = scipy.io.loadmat(str(meta_path), squeeze_me=True, struct_as_record=False)
    except Exception as err:  # scipy raises several types for corrupt files
        raise DataFormatError(f"{meta_path} is not a readable MATLAB file: {err}") from err
    missing = [k for k in METADATA_KEYS if k not in meta]
    if missing:
        raise DataFormatError(f"{meta_path} lacks key(s) {missing}; {LAYOUT_HELP}")
    cols = {k: np.atleast_1d(np.asarray(meta[k])) for k in METADATA_KEYS}
    cols["labelFaceGrid"] = np.asarray(meta["labelFaceGrid"]).reshape(-1, 4)
    n = len(cols["labelRecNum"])
    bad = {k: len(v) for k, v in cols.items() if len(v) != n}
    if bad:
        raise DataFormatError(
            f"{meta_path}: every key must have one row per frame ({n} in labelRecNum), "
            f"but found lengths {bad}"
        )
    flags = np.stack([cols[f"label{s.capitalize()}"].astype(bool) for s in SPLITS], axis=1)
    per_row = flags.sum(axis=1)
    if (per_row != 1).any():
        row = int(np.flatnonzero(per_row != 1)[0])
        raise DataFormatError(
            f"{meta_path}: row {row} is in {int(per_row[row])} of labelTrain/labelVal/labelTest; "
            "each frame must be in exactly one split"
        )
    gaze = np.stack([cols["labelDotXCam"], cols["labelDotYCam"]], axis=1).astype(np.float32)
    if not np.isfinite(gaze).all():
        row = int(np.flatnonzero(~np.isfinite(gaze).all(axis=1))[0])
        raise DataFormatError(f"{meta_path}: row {row} has a non-finite labelDotXCam/YCam")
    split = np.asarray(SPLITS)[flags.argmax(axis=1)]
    return ProcessedIndex(
        root=root,
        rec_num=cols["labelRecNum"].astype(np.int64),
        frame_index=cols["frameIndex"].astype(np.int64),
        gaze_cm=gaze,
        face_grid=cols["labelFaceGrid"].astype(np.int64),
        split=split,
        device=_load_devices(root),
        **_face_boxes(meta, n, meta_path),
    )


def _face_boxes(meta: dict, n: int, meta_path: Path) -> dict[str, np.ndarray]:
    """``face_box_px`` and ``frame_size`` from our extra keys, if ``metadata.mat`` has both."""
    if not all(k in meta for k in FACE_BOX_KEYS):
        return {}
    box = np.asarray(meta["labelFaceBox"], dtype=np.float64).reshape(-1, 4)
    size = np.asarray(meta["labelFrameSize"], dtype=np.int64).reshape(-1, 2)
    if len(box) != n or len(size) != n:
        raise DataFormatError(f"{meta_path}: labelFaceBox and labelFrameSize must have one row "
                              f"per frame ({n}), got {len(box)} and {len(size)}")
    return {"face_box_px": box, "frame_size": size}


def _load_devices(root: Path) -> dict[int, str]:
    path = root / "recordings.json"
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataFormatError(f"{path} is not valid JSON: {err}") from err
    return {int(rec): str(v.get("DeviceName", "")) for rec, v in info.items()}


def find_missing_files(index: ProcessedIndex, fields: tuple[str, ...]) -> np.ndarray:
    """Boolean mask of rows whose crops for ``fields`` are absent on disk.

    Lists each recording folder once instead of calling ``stat`` per file, which matters at
    GazeCapture's 1.5 million frames.
    """
    missing = np.zeros(len(index), dtype=bool)
    for rec in np.unique(index.rec_num):
        rows = np.flatnonzero(index.rec_num == rec)
        for name in fields:
            folder = index.root / f"{rec:05d}" / IMAGE_FOLDERS[name]
            try:
                present = set(os.listdir(folder))
            except FileNotFoundError:
                present = set()
            for r in rows:
                if f"{index.frame_index[r]:05d}.jpg" not in present:
                    missing[r] = True
    return missing
