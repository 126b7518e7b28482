"""Frame -> detection -> model inputs -> gaze (cm) -> screen position; outputs written.

Model inputs are built by :func:`tinytracker.data.inputs.frame_inputs`, the data pipeline's
crop, face-grid and grid-embedding geometry, with the preprocessing recorded in the model
(its input spec: pixel scale, resize filter, grid convention), the face grid measured in the
frame of the ``camera`` (:mod:`tinytracker.predict.camera`). Frames are used as the camera
gives them: RGB (:mod:`~tinytracker.predict.sources`), never mirrored, as GazeCapture's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tinytracker.correction.corrections import CalibrationError
from tinytracker.correction.saved import load_calibration
from tinytracker.data.face_detection import Detection, HaarDetector
from tinytracker.data.geometry import camera_face_grid
from tinytracker.data.inputs import frame_inputs, needs_face
from tinytracker.onnx_runner import OnnxRunner
from tinytracker.predict.camera import Camera, camera_from
from tinytracker.predict.draw import annotate
from tinytracker.predict.records import FramePrediction, write_csv, write_json
from tinytracker.predict.runner import CalibratedRunner, Runner, TorchRunner, load_runner
from tinytracker.predict.screen import Screen, custom, preset
from tinytracker.predict.sources import Frame, Source, open_source

log = logging.getLogger(__name__)

COORDINATES = ("x_cm, y_cm: gaze point in GazeCapture camera coordinates (cm; origin at the "
               "camera, x to the subject's right, y up, in the screen plane); screen_*: from "
               "the screen's top-left corner; boxes: face in frame pixels, eyes relative to "
               "the face box, left = the subject's left eye")
DEFAULT_FPS = 30.0


@dataclass
class Predictor:
    runner: Runner
    detector: Callable[[np.ndarray], Detection]  # a HaarDetector, or known boxes
    screen: Screen | None = None
    camera: Camera = field(default_factory=lambda: camera_from(None, None))

    def __call__(self, frame: Frame) -> FramePrediction:
        if frame.image is None:
            return FramePrediction(frame.index, frame.name, False, note=frame.error or "")
        found = self.detector(frame.image)
        spec = self.runner.spec
        if found.face is None:
            record = FramePrediction(frame.index, frame.name, False, note="no face found")
            if needs_face(spec.inputs):
                return record
            # model.position=frame: the whole frame is the input, as on the camera, which
            # runs it on every frame without a face detector
            record.note = "no face found (this model takes the whole frame)"
            return self._gaze(record, frame_inputs(frame.image, None, spec))
        record = FramePrediction(frame.index, frame.name, True, list(found.face),
                                 _box(found.left_eye), _box(found.right_eye))
        height, width = frame.image.shape[:2]
        record.face_grid = list(camera_face_grid(found.face, (width, height),
                                                 self.camera.fov_deg))
        if {"eye_left", "eye_right"} & set(spec.inputs) and None in (found.left_eye,
                                                                     found.right_eye):
            record.note = "eyes not found: this model needs both eye crops"
            return record
        inputs = frame_inputs(frame.image, found.face, spec, found.left_eye, found.right_eye,
                              self.camera.fov_deg)
        return self._gaze(record, inputs)

    def _gaze(self, record: FramePrediction, inputs: dict[str, np.ndarray]) -> FramePrediction:
        x_cm, y_cm = (float(v) for v in self.runner(inputs))
        record.x_cm, record.y_cm = x_cm, y_cm
        if self.screen is not None:
            record.screen = self.screen.locate(x_cm, y_cm)
        return record


def _box(box: tuple[int, ...] | None) -> list[int] | None:
    return None if box is None else list(box)


def screen_from(name: str | None, width_cm: float | None, height_cm: float | None,
                camera_x_cm: float | None, camera_y_cm: float | None,
                width_px: int | None, height_px: int | None) -> Screen | None:
    """``screen=<preset>``, or the explicit ``screen_*`` / ``camera_to_screen_*`` keys."""
    explicit = {"screen_width_cm": width_cm, "screen_height_cm": height_cm,
                "camera_to_screen_x_cm": camera_x_cm, "camera_to_screen_y_cm": camera_y_cm}
    given = [k for k, v in {**explicit, "screen_width_px": width_px,
                            "screen_height_px": height_px}.items() if v is not None]
    if name:
        if given:
            raise ValueError(f"give screen=<preset> or explicit screen keys, not both ({given})")
        return preset(name)
    if not given:
        return None
    missing = [k for k, v in explicit.items() if v is None]
    if missing:
        raise ValueError(f"an explicit screen needs {', '.join(missing)} too")
    return custom(width_cm, height_cm, camera_x_cm, camera_y_cm, width_px, height_px)


def calibrated(runner: TorchRunner | OnnxRunner, model_path: str, calibration: str,
               subject: str | None) -> tuple[Runner, dict[str, Any]]:
    """``runner`` corrected by one person's saved calibration, and what the summary says."""
    saved = load_calibration(calibration)
    key, correction = saved.for_subject(subject)
    if not saved.matches(model_path):
        msg = (f"calibration={calibration} was fitted on {saved.model.get('path')}, not on "
               f"ckpt_path={model_path} (the files differ)")
        if correction.needs_features:
            raise CalibrationError(msg + f"; a kind={correction.kind} calibration only fits "
                                   "the model it was fitted on")
        log.warning("%s; applying its kind=%s correction of the predicted point anyway", msg,
                    correction.kind)
    info = {"file": str(calibration), "subject": key, "kind": correction.kind,
            "fitted_on": saved.model.get("path")}
    return CalibratedRunner(runner, correction), info


FACE_BOXES = ("apple_like", "haar")


def detector_from(face_box: str = "apple_like", min_face_fraction: float = 0.1) -> HaarDetector:
    """``face_box=apple_like``: Haar's box mapped to the Apple-like box the models were trained
    on (:data:`~tinytracker.data.face_detection.HAAR_TO_APPLE`); ``haar``: Haar's own box."""
    if face_box not in FACE_BOXES:
        raise ValueError(f"face_box must be one of {FACE_BOXES}, got {face_box!r}")
    if face_box == "haar":
        return HaarDetector(min_face_fraction, box_mapping=None)
    return HaarDetector(min_face_fraction)


def run(ckpt_path: str, source: Source, out_dir: Path, screen: Screen | None = None,
        detector: HaarDetector | None = None, draw: bool = True,
        calibration: str | None = None, calibration_subject: str | None = None,
        camera: Camera | None = None) -> dict[str, Any]:
    """Predict every frame of ``source``; writes CSV, JSON and annotated images or video.

    ``calibration``: a ``corrections.json`` of ``tinytracker.calibrate``, whose correction for
    ``calibration_subject`` (optional when it holds one person) is applied to every gaze.
    ``detector``: default :func:`detector_from`'s; ``camera``: the camera behind the frames
    (default ``camera=gazecapture``)."""
    runner: Runner = load_runner(ckpt_path)
    calibration_info = None
    if calibration:
        runner, calibration_info = calibrated(runner, ckpt_path, calibration,
                                              calibration_subject)
    camera = camera or camera_from(None, None)
    detector = detector or detector_from()
    predictor = Predictor(runner, detector, screen, camera)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[FramePrediction] = []
    annotated: list[str] = []
    video = _VideoOut(out_dir / f"{source.name}_gaze.mp4", source.fps or DEFAULT_FPS)
    try:
        for frame in source.frames:
            record = predictor(frame)
            records.append(record)
            if frame.image is None or not draw:
                continue
            image = cv2.cvtColor(annotate(frame.image, record, screen), cv2.COLOR_RGB2BGR)
            if source.kind == "images":
                path = out_dir / f"{Path(frame.name).stem}_gaze.png"
                cv2.imwrite(str(path), image)
                annotated.append(str(path))
            else:
                video.write(image)
    except KeyboardInterrupt:  # a camera runs until interrupted: keep what was predicted
        log.warning("interrupted after %d frames; writing their predictions", len(records))
    if video.release():
        annotated.append(str(video.path))
    summary = {
        "checkpoint": str(ckpt_path),
        "input_kind": source.kind,
        "model_inputs": list(runner.spec.inputs),
        "calibration": calibration_info,
        "screen": screen.as_dict() if screen is not None else None,
        "camera": camera.as_dict(),
        "face_box": "haar" if detector.box_mapping is None else "apple_like",
        "input_spec": runner.spec.record(),
        "coordinates": COORDINATES,
        "frames_total": len(records),
        "frames_with_face": sum(r.face_found for r in records),
        "frames_with_gaze": sum(r.x_cm is not None for r in records),
        "unreadable": [r.source for r in records if r.note == "unreadable image"],
        "annotated": annotated,
        "csv": str(write_csv(records, out_dir / "predictions.csv")),
        "json": str(out_dir / "predictions.json"),
    }
    write_json(summary, records, out_dir / "predictions.json")
    return summary


class _VideoOut:
    """mp4 (``mp4v``) writer opened on the first frame, with that frame's size."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path, self.fps = path, fps
        self._writer: cv2.VideoWriter | None = None

    def write(self, image: np.ndarray) -> None:
        if self._writer is None:
            size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"),
                                           self.fps, size)
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {self.path} (mp4v)")
        self._writer.write(image)

    def release(self) -> bool:
        if self._writer is None:
            return False
        self._writer.release()
        return True


__all__ = ["Predictor", "open_source", "run", "screen_from"]
