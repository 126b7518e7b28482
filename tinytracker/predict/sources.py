"""What ``predict`` reads: an image, a folder of images, a video file or a camera index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")


class InputError(ValueError):
    """An input that does not exist or cannot be read."""


@dataclass
class Frame:
    index: int
    name: str  # image file name, or "frame NNNNN" of a video
    image: np.ndarray | None  # RGB uint8 HxWx3; None when unreadable (see error)
    error: str | None = None


@dataclass
class Source:
    kind: str  # "images" | "video" | "camera"
    name: str  # stem for output files
    fps: float | None  # videos and cameras
    frames: Iterator[Frame]


def read_image(path: Path) -> np.ndarray | None:
    """RGB uint8 image, or None when the file is not a readable image.

    RGB, the channel order every model here was trained on: GazeCapture's crops decoded by
    PIL (our prepare) or ``tf.image.decode_jpeg`` (the TinyTracker authors' training,
    src/ITrackerDataTF.py); OpenCV decodes to BGR, converted here and for video frames below.
    """
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def open_source(spec: str, max_frames: int | None = None) -> Source:
    """Open ``input=``; raises :class:`InputError` naming it when it cannot be read."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"input={path} is a folder without images "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        return Source("images", path.name, None, _images(files[:max_frames]))
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            image = read_image(path)
            if image is not None:
                return Source("images", path.stem, None, iter([Frame(0, path.name, image)]))
            if path.suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"input={path} is not a readable image")
        return _video(cv2.VideoCapture(str(path)), "video", path.stem, f"input={path}",
                      max_frames)
    if spec.strip().isdigit():
        index = int(spec)
        return _video(cv2.VideoCapture(index), "camera", f"camera{index}", f"camera {index}",
                      max_frames)
    raise InputError(f"input={path} does not exist (expected an image, a folder of images, "
                     "a video file or a camera index such as 0)")


def _images(files: list[Path]) -> Iterator[Frame]:
    for i, path in enumerate(files):
        image = read_image(path)
        yield Frame(i, path.name, image, None if image is not None else "unreadable image")


def _video(capture: cv2.VideoCapture, kind: str, name: str, what: str,
           max_frames: int | None) -> Source:
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise InputError(f"{what} cannot be read as a video or image")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    return Source(kind, name, fps if fps and fps > 0 else None,
                  _frames(capture, first, max_frames))


def _frames(capture: cv2.VideoCapture, first: np.ndarray,
            max_frames: int | None) -> Iterator[Frame]:
    try:
        image, index = first, 0
        while image is not None and (max_frames is None or index < max_frames):
            yield Frame(index, f"frame {index:05d}", cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
            ok, image = capture.read()
            image, index = (image if ok else None), index + 1
    finally:
        capture.release()
