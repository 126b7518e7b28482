"""Gaze on photos, videos or a camera: ``python -m tinytracker.predict ckpt_path=... input=...
out_dir=... [screen=iPhone 6] [camera=gazecapture]``.

``ckpt_path``: a tinytracker checkpoint (trained, or imported with
``tinytracker.import_tflite``) or an exported ``.onnx``. ``input``: an image, a folder of
images, a video file, or a camera index (``0``). Writes ``predictions.csv``,
``predictions.json`` and an annotated PNG per image (``<name>_gaze.png``) or an annotated
video (``<name>_gaze.mp4``) into ``out_dir``. With a screen (``screen=<GazeCapture device>``
or ``screen_width_cm``, ``screen_height_cm``, ``camera_to_screen_x_cm``,
``camera_to_screen_y_cm`` [, ``screen_width_px``, ``screen_height_px``]) the gaze point is
also given on the screen, in cm, points and pixels. ``calibration=<corrections.json>`` (from
``tinytracker.calibrate``) applies a person's correction to every gaze point;
``calibration_subject=<recording number>`` chooses the person when the file holds several.
``camera=gazecapture|photo`` or ``camera_fov_deg=`` say which camera took the frames, so that
the face grid means what it meant in training (:mod:`tinytracker.predict.camera`).
``check=look_at_camera`` (instead of ``input``) runs the look-at-camera consistency check on
photographs that ship with the installed packages (:mod:`tinytracker.predict.check`).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from tinytracker.cli import parse_args, refuse_overwrite

PROG = "tinytracker.predict"
# what predict writes into out_dir; an out_dir holding any of them needs overwrite=true
OUTPUTS = ("predictions.csv", "predictions.json", "*_gaze.png", "*_gaze.mp4",
           "look_at_camera.json", "look_at_camera.md")


@dataclass
class PredictArgs:
    ckpt_path: str = MISSING  # checkpoint (.ckpt) or exported model (.onnx)
    input: str | None = None  # image, folder of images, video file, or camera index
    check: str | None = None  # instead of input: look_at_camera (a consistency check)
    out_dir: str = MISSING
    screen: str | None = None  # GazeCapture device preset, e.g. "iPhone 6" or iphone_6
    screen_width_cm: float | None = None  # explicit screen (instead of a preset)
    screen_height_cm: float | None = None
    camera_to_screen_x_cm: float | None = None  # camera -> screen's left edge
    camera_to_screen_y_cm: float | None = None  # camera -> screen's top edge
    screen_width_px: int | None = None
    screen_height_px: int | None = None
    camera: str = "gazecapture"  # camera behind the frames: gazecapture | photo
    camera_fov_deg: float | None = None  # or its field of view across the shorter side
    max_frames: int | None = None  # video/camera/folder: stop after this many frames
    min_face_fraction: float = 0.1  # smallest face side / the frame's shorter side
    face_box: str = "apple_like"  # apple_like (Haar's box mapped, as trained) | haar (raw)
    annotate: bool = True  # write annotated PNGs / mp4
    calibration: str | None = None  # corrections.json of python -m tinytracker.calibrate
    calibration_subject: str | None = None  # its person (recording number), if it holds several
    overwrite: bool = False  # replace the predictions of an earlier run in out_dir


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(PredictArgs, argv, prog=PROG)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from tinytracker.data.face_detection import DetectorUnavailable
    from tinytracker.models.checkpoint import CheckpointError
    from tinytracker.predict.camera import camera_from
    from tinytracker.predict.pipeline import detector_from, run, screen_from
    from tinytracker.predict.sources import InputError, open_source

    try:
        if (args.input is None) == (args.check is None):
            raise ValueError("give input=<image, folder, video or camera index> or "
                             "check=look_at_camera (one of them)")
        refuse_overwrite(args.out_dir, OUTPUTS, args.overwrite)
        camera = camera_from(args.camera, args.camera_fov_deg)
        detector = detector_from(args.face_box, args.min_face_fraction)
        if args.check is not None:
            return _check(args, camera, detector)
        screen = screen_from(args.screen, args.screen_width_cm, args.screen_height_cm,
                             args.camera_to_screen_x_cm, args.camera_to_screen_y_cm,
                             args.screen_width_px, args.screen_height_px)
        source = open_source(args.input, args.max_frames)
        summary = run(args.ckpt_path, source, Path(args.out_dir), screen, detector,
                      args.annotate, args.calibration, args.calibration_subject, camera)
    except (InputError, FileNotFoundError, FileExistsError, CheckpointError,
            DetectorUnavailable, ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    summary["input"] = args.input
    print(json.dumps({k: summary[k] for k in ("input", "input_kind", "frames_total",
                                              "frames_with_face", "frames_with_gaze",
                                              "camera", "csv", "json", "annotated")},
                     indent=1))
    return summary


def _check(args: PredictArgs, camera, detector) -> dict:
    from tinytracker.predict.check import CHECKS, look_at_camera, markdown
    from tinytracker.predict.runner import load_runner

    if args.check not in CHECKS:
        raise ValueError(f"unknown check={args.check!r}; checks: {', '.join(CHECKS)}")
    summary = look_at_camera(load_runner(args.ckpt_path), camera, Path(args.out_dir),
                             args.ckpt_path, detector)
    print(markdown(summary), end="")
    return summary


if __name__ == "__main__":
    main()
