"""Guided calibration capture: show dots full screen, record camera frames, write a recording.

``python -m tinytracker.calibrate.capture out_dir=... [camera=0] (screen=<GazeCapture device> |
screen_width_cm=... screen_height_cm=... camera_to_screen_x_cm=... camera_to_screen_y_cm=...)
screen_width_px=... screen_height_px=... [points=13] [frames_per_dot=10] [settle_s=1.0]
[camera_preset=gazecapture | camera_fov_deg=...]``

The dots are the calibration pattern of :mod:`tinytracker.calibrate.pattern`, shown one at a
time on a full-screen OpenCV window (the screen whose geometry is given: where the camera sits
relative to its top-left corner, in cm, as GazeCapture's ``apple_device_data.csv`` gives it for
its devices). After ``settle_s`` seconds for the eyes to land on a dot, ``frames_per_dot``
camera frames are recorded. :func:`write_capture` then writes them as one recording
``out_dir/NNNNN`` in the raw GazeCapture layout (frames, face and eye boxes from the Haar
detector that ``predict`` uses, mapped to Apple-like boxes as there, the face grid measured
for ``camera=`` as ``predict`` measures it, ``dotInfo.json`` with the dots in camera cm), which
``python -m tinytracker.calibrate ckpt_path=... calibration_set=out_dir`` fits a correction on.
The window loop is kept thin; :func:`write_capture` does the work and is what tests run.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from omegaconf import MISSING

from tinytracker.calibrate.pattern import check_pattern_points, pattern_fractions
from tinytracker.cli import parse_args
from tinytracker.data.face_detection import Detection, HaarDetector
from tinytracker.data.gazecapture import RECORDING_NAME
from tinytracker.data.gazecapture_write import box_json, dot_json, write_frame, write_labels
from tinytracker.data.geometry import camera_face_grid
from tinytracker.predict.camera import camera_from
from tinytracker.predict.screen import Screen

log = logging.getLogger(__name__)

PROG = "tinytracker.calibrate.capture"
JPEG_QUALITY = 95
DOT_RADIUS_FRACTION = 0.012  # of the screen's shorter side
DOT_COLOUR_BGR = (0, 0, 255)


@dataclass
class Dot:
    index: int  # DotNum
    screen_px: tuple[int, int]  # where it is drawn, from the screen's top-left corner
    pts: tuple[float, float]  # GazeCapture's XPts / YPts (screen points)
    cam_cm: tuple[float, float]  # XCam / YCam: the label


@dataclass
class CapturedFrame:
    image: np.ndarray  # RGB uint8, as the camera gave it
    dot: Dot
    time_s: float  # since the dot appeared


def pattern_dots(points: int, screen: Screen, width_px: int, height_px: int) -> list[Dot]:
    """The first ``points`` pattern dots on ``screen`` (``width_px`` x ``height_px``)."""
    check_pattern_points(points)
    width_pt = screen.width_pt if screen.width_pt is not None else width_px
    height_pt = screen.height_pt if screen.height_pt is not None else height_px
    dots = []
    for i, (fx, fy) in enumerate(pattern_fractions(points)):
        x_cm, y_cm = screen.to_camera(fx * screen.width_cm, fy * screen.height_cm)
        dots.append(Dot(i, (round(fx * (width_px - 1)), round(fy * (height_px - 1))),
                        (round(fx * width_pt, 4), round(fy * height_pt, 4)),
                        (round(float(x_cm), 4), round(float(y_cm), 4))))
    return dots


def next_recording_dir(out_dir: Path) -> Path:
    """A new ``NNNNN`` folder after the existing ones: an earlier capture is never touched."""
    taken = [int(p.name) for p in out_dir.glob("*") if RECORDING_NAME.match(p.name)]
    return out_dir / f"{max(taken, default=0) + 1:05d}"


def write_capture(frames: Sequence[CapturedFrame], out_dir: str | Path, screen: Screen,
                  detector: Callable[[np.ndarray], Detection] | None = None,
                  device_name: str | None = None, split: str = "test",
                  camera_fov_deg: float | None = camera_from(None, None).fov_deg) -> Path:
    """Write captured frames as one raw GazeCapture recording; returns its folder.

    Face and eye boxes come from ``detector`` (default: :class:`HaarDetector`, Apple-like
    boxes); a frame without a face, or without both eyes, is written with ``IsValid`` 0
    (``prepare`` skips it, as it does GazeCapture's), never dropped. ``faceGrid.json`` is
    measured for a camera of ``camera_fov_deg`` across the frame's shorter side (default
    ``predict``'s ``camera=gazecapture``; ``None``: the frame itself), as ``predict`` does.
    """
    if not frames:
        raise ValueError("no frames were captured; nothing to write")
    detector = detector or HaarDetector()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rec_dir = next_recording_dir(out_dir)
    n = len(frames)
    face, left, right, grid = (np.zeros((n, 4)) for _ in range(4))
    ok_face, ok_left, ok_right = (np.zeros(n, bool) for _ in range(3))
    for i, frame in enumerate(frames):
        found = detector(frame.image)
        if found.face is not None:
            face[i], ok_face[i] = found.face, True
            height, width = frame.image.shape[:2]
            grid[i] = camera_face_grid(found.face, (width, height), camera_fov_deg)
        if found.left_eye is not None:
            left[i], ok_left[i] = found.left_eye, True
        if found.right_eye is not None:
            right[i], ok_right[i] = found.right_eye, True
        write_frame(rec_dir, i, cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), JPEG_QUALITY)
    dots = dot_json(np.array([f.dot.index for f in frames]),
                    np.array([f.dot.pts for f in frames]),
                    np.array([f.dot.cam_cm for f in frames]),
                    np.array([round(f.time_s, 4) for f in frames]))
    eyes = ok_face & ok_left & ok_right
    boxes = {"face": box_json(face, ok_face), "left_eye": box_json(left, eyes),
             "right_eye": box_json(right, eyes), "face_grid": box_json(grid, ok_face)}
    width_pt = screen.width_pt if screen.width_pt is not None else 0
    height_pt = screen.height_pt if screen.height_pt is not None else 0
    write_labels(rec_dir, n, boxes, dots,
                 info={"TotalFrames": n, "NumFaceDetections": int(ok_face.sum()),
                       "NumEyeDetections": int(eyes.sum()), "Dataset": split,
                       "DeviceName": device_name or screen.name},
                 screen={"H": [height_pt] * n, "W": [width_pt] * n, "Orientation": [1] * n})
    log.info("wrote %d frames (%d with face and eyes) to %s", n, int(eyes.sum()), rec_dir)
    return rec_dir


# ----------------------------------------------------------------------------- the window loop
def record(camera: int, dots: Sequence[Dot], width_px: int, height_px: int,
           frames_per_dot: int, settle_s: float) -> list[CapturedFrame]:
    """Show each dot full screen and grab frames; Esc aborts (keeping the frames so far)."""
    window = "tinytracker calibration (Esc: stop)"
    try:
        cv2.namedWindow(window, cv2.WINDOW_NORMAL)
        cv2.setWindowProperty(window, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
    except cv2.error as err:
        raise RuntimeError("this OpenCV build cannot open windows (opencv-python-headless): "
                           "install opencv-python (same version) for the capture") from err
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise RuntimeError(f"camera={camera} cannot be opened")
    radius = max(4, round(DOT_RADIUS_FRACTION * min(width_px, height_px)))
    frames: list[CapturedFrame] = []
    try:
        for dot in dots:
            canvas = np.zeros((height_px, width_px, 3), np.uint8)
            cv2.circle(canvas, dot.screen_px, radius, DOT_COLOUR_BGR, -1, cv2.LINE_AA)
            cv2.imshow(window, canvas)
            start = time.monotonic()
            taken = 0
            while taken < frames_per_dot:
                ok, image = capture.read()
                if (cv2.waitKey(1) & 0xFF) == 27:
                    log.warning("stopped by the user after %d frames", len(frames))
                    return frames
                if ok and time.monotonic() - start >= settle_s:
                    frames.append(CapturedFrame(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dot,
                                                time.monotonic() - start))
                    taken += 1
    finally:
        capture.release()
        cv2.destroyWindow(window)
    return frames


@dataclass
class CaptureArgs:
    out_dir: str = MISSING  # recordings go to out_dir/NNNNN (a new number each session)
    camera: int = 0
    screen: str | None = None  # GazeCapture device preset, or the explicit keys below
    screen_width_cm: float | None = None
    screen_height_cm: float | None = None
    camera_to_screen_x_cm: float | None = None  # camera -> the screen's left edge
    camera_to_screen_y_cm: float | None = None  # camera -> the screen's top edge
    screen_width_px: int = MISSING  # the full-screen window's size
    screen_height_px: int = MISSING
    points: int = 13
    frames_per_dot: int = 10
    settle_s: float = 1.0  # wait after a dot appears before recording
    device_name: str | None = None  # info.json DeviceName (default: the screen's name)
    camera_preset: str = "gazecapture"  # the camera behind the frames: predict's camera=
    camera_fov_deg: float | None = None  # or its field of view across the shorter side


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(CaptureArgs, argv, prog=PROG)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tinytracker.predict.pipeline import screen_from

    try:
        # a preset knows its points; the window's pixel size is given either way
        px = (None, None) if args.screen else (args.screen_width_px, args.screen_height_px)
        screen = screen_from(args.screen, args.screen_width_cm, args.screen_height_cm,
                             args.camera_to_screen_x_cm, args.camera_to_screen_y_cm, *px)
        if screen is None:
            raise ValueError("give the screen: screen=<GazeCapture device> or screen_width_cm, "
                             "screen_height_cm, camera_to_screen_x_cm, camera_to_screen_y_cm")
        if args.frames_per_dot < 1:
            raise ValueError(f"frames_per_dot must be >= 1, got {args.frames_per_dot}")
        dots = pattern_dots(args.points, screen, args.screen_width_px, args.screen_height_px)
        frames = record(args.camera, dots, args.screen_width_px, args.screen_height_px,
                        args.frames_per_dot, args.settle_s)
        camera = camera_from(args.camera_preset, args.camera_fov_deg)
        rec_dir = write_capture(frames, args.out_dir, screen, device_name=args.device_name,
                                camera_fov_deg=camera.fov_deg)
    except (ValueError, RuntimeError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(f"calibration set written to {rec_dir}; fit it with:\n  python -m "
          f"tinytracker.calibrate ckpt_path=<model> calibration_set={args.out_dir} "
          "out_dir=<dir>")
    return rec_dir


if __name__ == "__main__":
    main()
