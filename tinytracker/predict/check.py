"""Look-at-camera consistency check: ``python -m tinytracker.predict ckpt_path=...
check=look_at_camera out_dir=...``.

A person who looks into the lens looks at the camera, (0, 0) cm, wherever the face sits in the
frame. Cropping a photo turns the camera about its centre (to first order), scaling it changes
the focal length and mirroring it gives another person who also looks into the lens, so every
framing of such a photo has the same answer. The check runs ``predict``'s own pipeline
(:class:`~tinytracker.predict.pipeline.Predictor`: detection, input spec, camera) on:

* real photographs of people looking into the lens that ship in installed packages:
  scikit-image's astronaut (Eileen Collins; ``skimage.data.astronaut``) and matplotlib's
  Grace Hopper (``matplotlib.cbook.get_sample_data("grace_hopper.jpg")``); faces are found
  by the Haar detector, as ``predict`` finds them;
* synthetic frames whose subject fixates the camera at known head positions
  (:mod:`tinytracker.data.synthetic.look`), with their known Apple-like face boxes moved
  along with each framing: the geometry without the detector.

Framings (:data:`FRAMINGS`): the image as it is, mirrored, a centred 3:4 portrait window
resized to 480x640 and that mirrored (the four of issue 20; a 3:4 image is its own portrait
window), the content shifted left and right by :data:`SHIFT` of the width (same frame size,
black where nothing was), and the central 80% enlarged back to full size. Per image it
reports every prediction, the spread (largest distance between two predictions) over the
first four framings and over all, the mean distance from (0, 0), and how far the prediction
of the image as it is moves when its face box is 5% larger, smaller or shifted by 5% of its
side (``box_sensitivity_cm``: a detector is not more precise than that).
Writes ``look_at_camera.json`` and ``look_at_camera.md`` into ``out_dir``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tinytracker.atomic import write_json, write_text
from tinytracker.data.face_detection import Detection, HaarDetector
from tinytracker.predict.camera import Camera
from tinytracker.predict.pipeline import Predictor
from tinytracker.predict.runner import Runner
from tinytracker.predict.sources import Frame

CHECKS = ("look_at_camera",)
OUTPUTS = ("look_at_camera.json", "look_at_camera.md")
FRAMINGS = ("original", "mirrored", "portrait", "portrait mirrored", "shifted left",
            "shifted right", "zoom 1.25x")
ISSUE_FRAMINGS = FRAMINGS[:4]  # the four framings of issue 20
PORTRAIT_PX = (480, 640)  # GazeCapture's portrait frame
BOX_JITTER = 0.05  # of the face box's side: the perturbations of box_sensitivity_cm
SHIFT = 0.15  # of the image's width: the shifted framings

Box = tuple[float, float, float, float]
Transform = Callable[[np.ndarray], tuple[np.ndarray, Callable[[Box], Box]]]


@dataclass
class Photo:
    name: str
    image: np.ndarray  # RGB uint8
    source: str
    face_box: Box | None = None  # known Apple-like box (synthetic); None: detect


def real_photos() -> tuple[list[Photo], list[str]]:
    """The photographs that the installed packages ship, and a note per missing one."""
    photos, missing = [], []
    try:
        from skimage import data
        photos.append(Photo("astronaut", data.astronaut(), "skimage.data.astronaut()"))
    except ImportError:
        missing.append("astronaut: scikit-image is not installed (pip install scikit-image)")
    from matplotlib import cbook

    with cbook.get_sample_data("grace_hopper.jpg") as fh:
        image = cv2.imdecode(np.frombuffer(fh.read(), np.uint8), cv2.IMREAD_COLOR)
    photos.append(Photo("Grace Hopper", cv2.cvtColor(image, cv2.COLOR_BGR2RGB),
                        "matplotlib.cbook.get_sample_data('grace_hopper.jpg')"))
    return photos, missing


def synthetic_photos() -> list[Photo]:
    from tinytracker.data.synthetic.look import look_at_camera_frames

    return [Photo(name, image, "tinytracker.data.synthetic.look", box)
            for name, image, box in look_at_camera_frames()]


# ----------------------------------------------------------------------------- framings
def _window(x0: int, y0: int, w: int, h: int, out_wh: tuple[int, int] | None = None
            ) -> Transform:
    def apply(image: np.ndarray) -> tuple[np.ndarray, Callable[[Box], Box]]:
        crop = image[y0:y0 + h, x0:x0 + w]
        k = 1.0 if out_wh is None else out_wh[0] / w
        if out_wh is not None:
            crop = cv2.resize(crop, out_wh, interpolation=cv2.INTER_AREA if k < 1
                              else cv2.INTER_LINEAR)
        return np.ascontiguousarray(crop), lambda b: ((b[0] - x0) * k, (b[1] - y0) * k,
                                                      b[2] * k, b[3] * k)
    return apply


def _shift(dx: int) -> Transform:
    def apply(image: np.ndarray) -> tuple[np.ndarray, Callable[[Box], Box]]:
        out = np.zeros_like(image)
        width = image.shape[1]
        if dx >= 0:
            out[:, dx:] = image[:, :width - dx]
        else:
            out[:, :width + dx] = image[:, -dx:]
        return out, lambda b: (b[0] + dx, b[1], b[2], b[3])
    return apply


def _mirror(inner: Transform) -> Transform:
    def apply(image: np.ndarray) -> tuple[np.ndarray, Callable[[Box], Box]]:
        framed, move = inner(image)
        width = framed.shape[1]

        def flip(b: Box) -> Box:
            x, y, w, h = move(b)
            return (width - x - w, y, w, h)
        return np.ascontiguousarray(framed[:, ::-1]), flip
    return apply


def framings(height: int, width: int) -> dict[str, Transform]:
    """:data:`FRAMINGS` of an image of this size: image and face box -> framed."""
    if width * 4 > height * 3:  # wider than 3:4: the full height, a centred 3:4 window
        pw, ph = round(height * 3 / 4), height
    else:
        pw, ph = width, round(width * 4 / 3)
    portrait = _window((width - pw) // 2, (height - ph) // 2, pw, ph, PORTRAIT_PX)
    whole = _window(0, 0, width, height)
    shift = round(SHIFT * width)
    zw, zh = round(0.8 * width), round(0.8 * height)
    return dict(zip(FRAMINGS, (
        whole, _mirror(whole), portrait, _mirror(portrait), _shift(-shift), _shift(shift),
        _window((width - zw) // 2, (height - zh) // 2, zw, zh, (width, height)),
    ), strict=True))


# ----------------------------------------------------------------------------- the check
class _KnownBox:
    """A detector that returns a given face box (the synthetic frames' true one)."""

    def __init__(self, box: Box) -> None:
        self.box = tuple(round(v) for v in box)

    def __call__(self, image: np.ndarray) -> Detection:
        return Detection(self.box)


class _Jittered:
    """Another detector's face box, scaled about its centre and shifted (in box sides)."""

    def __init__(self, detector: Callable[[np.ndarray], Detection], scale: float, dx: float,
                 dy: float) -> None:
        self.detector, self.scale, self.dx, self.dy = detector, scale, dx, dy

    def __call__(self, image: np.ndarray) -> Detection:
        found = self.detector(image)
        if found.face is None:
            return found
        x, y, w, h = found.face
        side = self.scale * w
        cx, cy = x + w / 2 + self.dx * w, y + h / 2 + self.dy * w
        return Detection((round(cx - side / 2), round(cy - side / 2), round(side),
                          round(side)))


def spread_cm(points: list[tuple[float, float]]) -> float | None:
    """Largest distance between two of the points; None with fewer than two."""
    if len(points) < 2:
        return None
    return max(float(np.hypot(a[0] - b[0], a[1] - b[1])) for a, b in combinations(points, 2))


def check_photo(runner: Runner, camera: Camera, photo: Photo, detector: HaarDetector
                ) -> dict[str, Any]:
    rows, points = [], {}
    height, width = photo.image.shape[:2]
    for name, transform in framings(height, width).items():
        image, move = transform(photo.image)
        finder = detector if photo.face_box is None else _KnownBox(move(photo.face_box))
        record = Predictor(runner, finder, None, camera)(Frame(0, name, image))
        rows.append({"framing": name, "frame_px": [image.shape[1], image.shape[0]],
                     "face_box": record.face_box, "face_grid": record.face_grid,
                     "x_cm": record.x_cm, "y_cm": record.y_cm, "note": record.note})
        if record.x_cm is not None:
            points[name] = (record.x_cm, record.y_cm)
    base = detector if photo.face_box is None else _KnownBox(photo.face_box)
    moved = []
    if "original" in points:
        for scale, dx, dy in ((1 + BOX_JITTER, 0, 0), (1 - BOX_JITTER, 0, 0),
                              (1, BOX_JITTER, 0), (1, -BOX_JITTER, 0), (1, 0, BOX_JITTER),
                              (1, 0, -BOX_JITTER)):
            record = Predictor(runner, _Jittered(base, scale, dx, dy), None, camera)(
                Frame(0, "original", photo.image))
            if record.x_cm is not None:
                moved.append(float(np.hypot(record.x_cm - points["original"][0],
                                            record.y_cm - points["original"][1])))
    found = list(points.values())
    return {
        "photo": photo.name, "source": photo.source,
        "face_boxes": "known (generator)" if photo.face_box is not None else "Haar detector",
        "framings": rows,
        "spread_issue_framings_cm": spread_cm([points[n] for n in ISSUE_FRAMINGS
                                               if n in points]),
        "spread_all_cm": spread_cm(found),
        "mean_distance_from_camera_cm": (float(np.mean([np.hypot(*p) for p in found]))
                                         if found else None),
        "box_sensitivity_cm": max(moved) if moved else None,
    }


def look_at_camera(runner: Runner, camera: Camera, out_dir: Path, model_path: str,
                   detector: HaarDetector | None = None) -> dict[str, Any]:
    """Run the check on every photo; write ``look_at_camera.json`` / ``.md``; the summary."""
    photos, missing = real_photos()
    detector = detector or HaarDetector()
    results = [check_photo(runner, camera, p, detector) for p in [*photos, *synthetic_photos()]]
    summary = {"check": "look_at_camera", "checkpoint": model_path, "camera": camera.as_dict(),
               "face_box": "haar" if detector.box_mapping is None else "apple_like",
               "input_spec": runner.spec.record(), "expected_cm": [0.0, 0.0],
               "missing": missing, "photos": results}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / OUTPUTS[0], summary)
    write_text(out_dir / OUTPUTS[1], markdown(summary))
    return summary


def _cm(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def markdown(summary: dict[str, Any]) -> str:
    """The summary as two markdown tables: one row per photo, then every prediction."""
    lines = [f"Look-at-camera check of `{summary['checkpoint']}` (expected: (0, 0) cm; "
             f"camera={summary['camera']['name']}, face_box={summary['face_box']})", "",
             "| photo | spread, 4 framings (cm) | spread, all (cm) | mean distance from "
             "(0, 0) (cm) | box ±5% moves it by (cm) |", "|---|---|---|---|---|"]
    for p in summary["photos"]:
        lines.append(f"| {p['photo']} | {_cm(p['spread_issue_framings_cm'])} | "
                     f"{_cm(p['spread_all_cm'])} | {_cm(p['mean_distance_from_camera_cm'])} | "
                     f"{_cm(p['box_sensitivity_cm'])} |")
    lines += ["", "| photo | framing | face box | face grid | XCam (cm) | YCam (cm) |",
              "|---|---|---|---|---|---|"]
    for p in summary["photos"]:
        for r in p["framings"]:
            box = "—" if r["face_box"] is None else ", ".join(str(v) for v in r["face_box"])
            grid = "—" if r["face_grid"] is None else ", ".join(str(v) for v in r["face_grid"])
            lines.append(f"| {p['photo']} | {r['framing']} | {box} | {grid} | "
                         f"{_cm(r['x_cm'])} | {_cm(r['y_cm'])} |")
    lines += [f"\n{note}" for note in summary["missing"]]
    return "\n".join(lines) + "\n"
