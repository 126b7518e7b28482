"""Raw GazeCapture layout -> processed layout of the public iTracker PyTorch code.

``python -m tinytracker.data.prepare raw_dir=... out_dir=... [skip_bad=false] [workers=1]``

Output, identical in layout, file names, crop boxes, JPEG quality and ``metadata.mat`` keys and
dtypes to CSAILVision/GazeCapture ``pytorch/prepareDataset.py``::

    out_dir/metadata.mat                   labelRecNum (int16), frameIndex (int32),
                                           labelDotXCam, labelDotYCam (float64),
                                           labelFaceGrid (N x 4, uint8),
                                           labelTrain, labelVal, labelTest (bool)
    out_dir/NNNNN/appleFace/NNNNN.jpg      face crop, saved at crop size, quality 95
    out_dir/NNNNN/appleLeftEye/NNNNN.jpg
    out_dir/NNNNN/appleRightEye/NNNNN.jpg
    out_dir/NNNNN/frames/NNNNN.jpg         extra: the full frame (hard link to the raw file,
                                           a copy where linking fails), for position=frame
    out_dir/recordings.json                extra, optional: DeviceName, Dataset, screen size

``metadata.mat`` also holds two extra keys the public loader ignores: ``labelFaceBox``
(N x 4 float64, the ``appleFace`` box in frame pixels) and ``labelFrameSize`` (N x 2 int32,
frame width and height), from which the ``face_box`` field is computed exactly.

Differences from the public script, all additive: the split comes from each recording's
``info.json`` ``Dataset`` (the public script copies it from a reference ``metadata.mat``),
bad input raises :class:`DataFormatError` (or is skipped and counted with ``skip_bad``), and the
work is resumable: each recording gets ``NNNNN/.labels.json`` and then, last, a ``.prepared``
marker holding a fingerprint of its raw JSON files; a rerun skips recordings whose marker
matches and rebuilds ``metadata.mat`` from all label files. Each recording is built in a
temporary directory and renamed into place whole, and ``metadata.mat`` and
``recordings.json`` replace their earlier versions atomically (:mod:`tinytracker.atomic`), so
a ``kill -9`` leaves finished recordings and nothing half-written that a rerun would trust.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
from omegaconf import MISSING
from PIL import Image
from tqdm import tqdm

from tinytracker.atomic import (
    WriteError,
    building_dir,
    explain,
    open_atomic,
    remove_leftovers,
    write_json,
)
from tinytracker.cli import parse_args
from tinytracker.data.gazecapture import (
    BOX_FILES,
    DataFormatError,
    Recording,
    device_geometry,
    list_recordings,
    load_frame,
    read_recording,
)
from tinytracker.data.geometry import crop_boxes, crop_with_padding
from tinytracker.data.processed import CROP_FOLDERS, IMAGE_FOLDERS, SPLITS

log = logging.getLogger(__name__)

PREPARE_VERSION = 2  # 2: full frames, labelFaceBox, labelFrameSize
LABELS_FILE = ".labels.json"
DONE_MARKER = ".prepared"
JPEG_QUALITY = 95  # public prepareDataset.py


@dataclass
class PrepareArgs:
    """``python -m tinytracker.data.prepare`` arguments."""

    raw_dir: str = MISSING
    out_dir: str = MISSING
    skip_bad: bool = False  # skip (and count) bad recordings/frames instead of stopping
    workers: int = 1  # processes; recordings are independent


@dataclass
class PrepareReport:
    out_dir: Path
    recordings: int = 0  # recordings with at least one frame in metadata.mat
    frames: int = 0  # rows of metadata.mat
    prepared: int = 0  # recordings processed in this run
    resumed: int = 0  # recordings reused from an earlier run
    invalid_frames: int = 0  # frames excluded by their IsValid flags (normal, not an error)
    skipped_frames: int = 0  # bad frames skipped with skip_bad
    skipped_recordings: int = 0  # bad recordings skipped with skip_bad
    split_frames: dict[str, int] = field(default_factory=dict)


def prepare(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    skip_bad: bool = False,
    workers: int = 1,
) -> PrepareReport:
    """Crop every valid frame of ``raw_dir`` into ``out_dir`` and write ``metadata.mat``."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    recs = list_recordings(raw_dir)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise explain(err, out, None) from err
    remove_leftovers(out)  # recordings half-built by a killed run
    report = PrepareReport(out_dir=out)
    todo = [r for r in recs if not _is_done(r, out / r.name, skip_bad)]
    report.resumed = len(recs) - len(todo)
    if report.resumed:
        log.info("resuming: %d of %d recordings already prepared in %s",
                 report.resumed, len(recs), out)
    with tqdm(total=len(recs), initial=report.resumed, desc="prepare", unit="rec") as bar:
        for error in _run(todo, out, skip_bad, workers):
            bar.update()
            if error is None:
                report.prepared += 1
                continue
            if not skip_bad:
                raise error
            report.skipped_recordings += 1
            log.warning("skipping recording (skip_bad=true): %s", error)
    _assemble(recs, out, report)
    return report


# ----------------------------------------------------------------------------- one recording
def prepare_recording(rec_dir: Path, rec_out: Path, skip_bad: bool) -> int:
    """Crop one recording; returns the number of frames written. Built beside ``rec_out``
    and renamed into place when whole (marker written last)."""
    rec = read_recording(rec_dir, skip_bad)
    with building_dir(rec_out) as tmp:
        return _write_recording(rec, rec_dir, tmp, skip_bad)


def _write_recording(rec: Recording, rec_dir: Path, rec_out: Path, skip_bad: bool) -> int:
    # the boxes predict crops live frames at (tinytracker.data.inputs.frame_crops)
    boxes = crop_boxes(rec.face.xywh, rec.left_eye.xywh, rec.right_eye.xywh)
    folders = {field: rec_out / name for field, name in CROP_FOLDERS.items()}
    for folder in (*folders.values(), rec_out / IMAGE_FOLDERS["frame"]):
        folder.mkdir(parents=True, exist_ok=True)
    bad = {int(rec.frame_index[r]): msg for r, msg in rec.bad_frames.items()}
    rows, sizes = [], []
    for row in np.flatnonzero(rec.valid):
        frame = int(rec.frame_index[row])
        try:
            image = load_frame(rec, row)
        except DataFormatError as err:
            if not skip_bad:
                raise
            log.warning("skipping frame (skip_bad=true): %s", err)
            bad[frame] = str(err)
            continue
        for key, folder in folders.items():
            crop = crop_with_padding(image, boxes[key][row])
            Image.fromarray(crop).save(folder / f"{frame:05d}.jpg", quality=JPEG_QUALITY)
        _link_frame(rec.frame_path(row), rec_out / IMAGE_FOLDERS["frame"] / f"{frame:05d}.jpg")
        rows.append(row)
        sizes.append([image.shape[1], image.shape[0]])
    labels = _labels(rec, np.asarray(rows, dtype=np.int64), bad, sizes)
    _write_json_atomic(rec_out / LABELS_FILE, labels)
    _write_json_atomic(rec_out / DONE_MARKER, _marker(rec_dir, skip_bad))
    return len(rows)


def _link_frame(src: Path, dst: Path) -> None:
    """The raw frame file at ``dst``, unchanged: a hard link costs no disk; copy otherwise."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)


def _labels(rec: Recording, rows: np.ndarray, bad: dict[int, str],
            frame_sizes: list[list[int]]) -> dict[str, Any]:
    return {
        "recNum": rec.rec_num,
        "Dataset": rec.dataset,
        "DeviceName": rec.device_name,
        "frameIndex": rec.frame_index[rows].tolist(),
        "XCam": rec.dot_cm[rows, 0].tolist(),
        "YCam": rec.dot_cm[rows, 1].tolist(),
        # public script: bboxFromJson(faceGrid) truncates to int
        "faceGrid": rec.face_grid.xywh[rows].astype(np.int64).tolist(),
        "faceBox": rec.face.xywh[rows].astype(np.float64).tolist(),
        "frameSize": frame_sizes,
        "invalidFrames": int((~rec.valid).sum()) - len(rec.bad_frames),
        "skippedFrames": {f"{k:05d}": v for k, v in sorted(bad.items())},
    }


def _fingerprint(rec_dir: Path) -> dict[str, list[int]]:
    """Size and mtime of the files labels come from, so edited raw data is prepared again."""
    names = ["frames.json", "info.json", *BOX_FILES.values(), "dotInfo.json", "frames"]
    out = {}
    for name in names:
        st = (rec_dir / name).stat() if (rec_dir / name).exists() else None
        out[name] = [st.st_size, st.st_mtime_ns] if st else []
    return out


def _marker(rec_dir: Path, skip_bad: bool) -> dict[str, Any]:
    return {"version": PREPARE_VERSION, "skip_bad": skip_bad, "source": _fingerprint(rec_dir)}


def _is_done(rec_dir: Path, rec_out: Path, skip_bad: bool) -> bool:
    """A finished recording whose raw files are unchanged; frames skipped as bad are only
    accepted when this run also skips bad frames."""
    try:
        marker = json.loads((rec_out / DONE_MARKER).read_text())
        labels = json.loads((rec_out / LABELS_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if marker.get("version") != PREPARE_VERSION or marker.get("source") != _fingerprint(rec_dir):
        return False
    return skip_bad or not labels.get("skippedFrames")


# ----------------------------------------------------------------------------- running
def _run(
    todo: list[Path], out: Path, skip_bad: bool, workers: int
) -> Iterator[DataFormatError | None]:
    """Prepare each recording, yielding its error (or None) as each finishes."""
    if workers == 1 or len(todo) <= 1:
        for rec_dir in todo:
            yield _try_prepare(rec_dir, out / rec_dir.name, skip_bad)
        return
    # spawn, not fork: the caller may hold threads (torch, tqdm) that fork would copy mid-state
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_try_prepare, r, out / r.name, skip_bad) for r in todo]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _try_prepare(rec_dir: Path, rec_out: Path, skip_bad: bool) -> DataFormatError | None:
    try:
        prepare_recording(rec_dir, rec_out, skip_bad)
    except DataFormatError as err:
        return err
    return None


# ----------------------------------------------------------------------------- assembling
def _assemble(recs: list[Path], out: Path, report: PrepareReport) -> None:
    """Concatenate the per-recording label files into metadata.mat and recordings.json."""
    parts, extra = [], {}
    for rec_dir in recs:
        rec_out = out / rec_dir.name
        if not (rec_out / DONE_MARKER).is_file():
            continue  # skipped as bad in this run
        labels = json.loads((rec_out / LABELS_FILE).read_text())
        report.invalid_frames += labels["invalidFrames"]
        report.skipped_frames += len(labels["skippedFrames"])
        if labels["frameIndex"]:
            parts.append(labels)
            extra[rec_dir.name] = _recording_info(labels)
    if not parts:
        raise DataFormatError(f"no usable frame in {recs[0].parent}: every frame is invalid "
                              "(IsValid flags) or was skipped as bad")
    meta = _metadata(parts)
    _savemat_atomic(out / "metadata.mat", meta)
    _write_json_atomic(out / "recordings.json", extra)
    report.recordings = len(parts)
    report.frames = len(meta["frameIndex"])
    report.split_frames = {s: int(meta[f"label{s.capitalize()}"].sum()) for s in SPLITS}
    log.info("prepared %d frames of %d recordings into %s (%s)", report.frames,
             report.recordings, out, report.split_frames)


def _metadata(parts: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    rec_num = np.concatenate([[p["recNum"]] * len(p["frameIndex"]) for p in parts])
    grid = np.concatenate([np.asarray(p["faceGrid"], dtype=np.int64).reshape(-1, 4)
                           for p in parts])
    split = np.concatenate([[p["Dataset"]] * len(p["frameIndex"]) for p in parts])
    meta = {
        # public dtypes; widened only where a value would not fit (never wrap a label)
        "labelRecNum": _fit(rec_num, np.int16, np.int32),
        "frameIndex": np.concatenate([p["frameIndex"] for p in parts]).astype(np.int32),
        "labelDotXCam": np.concatenate([p["XCam"] for p in parts]).astype(np.float64),
        "labelDotYCam": np.concatenate([p["YCam"] for p in parts]).astype(np.float64),
        "labelFaceGrid": _fit(grid, np.uint8, np.int16),
        "labelFaceBox": np.concatenate([np.asarray(p["faceBox"], dtype=np.float64).reshape(-1, 4)
                                        for p in parts]),
        "labelFrameSize": np.concatenate([np.asarray(p["frameSize"], dtype=np.int32)
                                          .reshape(-1, 2) for p in parts]),
    }
    for s in SPLITS:
        meta[f"label{s.capitalize()}"] = split == s
    return meta


def _fit(values: np.ndarray, dtype: type, wider: type) -> np.ndarray:
    info = np.iinfo(dtype)
    if values.size and (values.min() < info.min or values.max() > info.max):
        return values.astype(wider)
    return values.astype(dtype)


def _recording_info(labels: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "DeviceName": labels["DeviceName"],
        "Dataset": labels["Dataset"],
        "NumFrames": len(labels["frameIndex"]),
    }
    geom = device_geometry(labels["DeviceName"])
    if geom is not None:
        info["ScreenWidthCm"] = geom.screen_w_cm
        info["ScreenHeightCm"] = geom.screen_h_cm
        info["CameraToScreenXCm"] = geom.camera_to_screen_x_cm
        info["CameraToScreenYCm"] = geom.camera_to_screen_y_cm
    return info


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_json(path, obj, indent=1, sort_keys=True, newline=False)


def _savemat_atomic(path: Path, meta: dict[str, np.ndarray]) -> None:
    with open_atomic(path, "wb", sum(v.nbytes for v in meta.values())) as fh:
        scipy.io.savemat(fh, meta)


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> None:
    args = parse_args(PrepareArgs, argv, prog="tinytracker.data.prepare")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = prepare(args.raw_dir, args.out_dir, args.skip_bad, args.workers)
    except (DataFormatError, WriteError) as err:
        print(f"tinytracker.data.prepare: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(json.dumps({k: str(v) if isinstance(v, Path) else v
                      for k, v in vars(report).items()}, indent=1))


if __name__ == "__main__":
    main()
