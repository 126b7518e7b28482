"""Face and eye detection with OpenCV's bundled Haar cascades, in GazeCapture's conventions.

GazeCapture's boxes came from Apple's face detector; here the frontal-face and eye cascades
that ship with OpenCV (``cv2.data.haarcascades``, Viola-Jones) stand in, so nothing is
downloaded. Conventions of the dataset's ``appleFace.json`` / ``appleLeftEye.json``: the face
box ``(x, y, w, h)`` is in frame pixels, eye boxes are relative to the face box, and the left
eye is the *subject's* left eye, which is on the image's right in an unmirrored camera frame
(GazeCapture's README; frames are not mirrored, so neither is anything here).

The Haar box is not Apple's: it is larger and centred a little higher. Every model here was
trained on Apple(-like) boxes (GazeCapture's ``appleFace``, the synthetic generator's
stand-in for them), so the detector maps its box with :data:`HAAR_TO_APPLE`, a scale and a
centre offset fitted on synthetic frames, where both boxes are known
(``python -m tinytracker.data.face_box_fit`` refits it; ``docs/predict.md`` gives the fit).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FACE_CASCADE = "haarcascade_frontalface_default.xml"
EYE_CASCADE = "haarcascade_eye.xml"
# Eyes are searched in the upper part of the face box only (they sit at ~40% of its height).
EYE_SEARCH_HEIGHT = 0.6


class DetectorUnavailable(RuntimeError):
    """This OpenCV build has no Haar cascades."""


Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class BoxMapping:
    """A square detector box -> another detector's box: side times ``scale``, centre moved by
    ``(dx, dy)`` detector-box sides (x right, y down)."""

    scale: float
    dx: float
    dy: float

    def __call__(self, box: Box) -> Box:
        x, y, w, h = box
        cx, cy = x + w / 2 + self.dx * w, y + h / 2 + self.dy * w
        side_w, side_h = self.scale * w, self.scale * h
        return (round(cx - side_w / 2), round(cy - side_h / 2), round(side_w), round(side_h))


# Haar box -> Apple-like box, least squares over synthetic frames where Haar's box overlaps the
# generator's appleFace box (IoU > 0.3): `python -m tinytracker.data.face_box_fit` (seed 0,
# 40 subjects x 5 frames: Haar finds 103 of the 200 faces, 100 overlap; the fitted side is
# off by 7% rms, the centre by 5% of the side). We found no published statistic of Apple's
# GazeCapture boxes to check this stand-in against (docs/predict.md).
HAAR_TO_APPLE = BoxMapping(scale=0.707, dx=-0.006, dy=0.046)


@dataclass(frozen=True)
class Detection:
    face: Box | None  # frame pixels; None: no face found
    left_eye: Box | None = None  # the subject's left eye, relative to the face box
    right_eye: Box | None = None


@dataclass
class HaarDetector:
    """The most confident frontal face of a frame and up to one eye on each side of it.

    ``min_face_fraction``: smallest face side, as a fraction of the frame's shorter side.
    ``scale_factor`` / ``min_neighbors``: OpenCV's ``detectMultiScale`` parameters.
    ``box_mapping``: Haar's box -> the box the models were trained on
    (:data:`HAAR_TO_APPLE`); ``None`` keeps Haar's own box. Of several faces the one with the
    highest cascade score is kept, not the largest: a larger false detection in the
    background would otherwise win.
    """

    min_face_fraction: float = 0.1
    scale_factor: float = 1.1
    min_neighbors: int = 5
    box_mapping: BoxMapping | None = HAAR_TO_APPLE

    def __post_init__(self) -> None:
        self._face = _cascade(FACE_CASCADE)
        self._eye = _cascade(EYE_CASCADE)

    def __call__(self, frame: np.ndarray) -> Detection:
        """Detect in an RGB (or grey) uint8 frame."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        grey = cv2.equalizeHist(grey)
        side = max(1, int(self.min_face_fraction * min(grey.shape[:2])))
        faces, _, scores = self._face.detectMultiScale3(
            grey, self.scale_factor, self.min_neighbors, minSize=(side, side),
            outputRejectLevels=True)
        if len(faces) == 0:
            return Detection(None)
        x, y, w, h = (int(v) for v in faces[int(np.argmax(np.ravel(scores)))])
        left, right = self._eyes(grey[y:y + int(EYE_SEARCH_HEIGHT * h), x:x + w], w)
        if self.box_mapping is None:
            return Detection((x, y, w, h), left, right)
        face = self.box_mapping((x, y, w, h))
        # eye boxes stay where they are in the frame, relative to the mapped face box
        moved = [None if e is None else (e[0] + x - face[0], e[1] + y - face[1], e[2], e[3])
                 for e in (left, right)]
        return Detection(face, moved[0], moved[1])

    def _eyes(self, roi: np.ndarray, face_w: int) -> tuple[Box | None, Box | None]:
        """(subject's left, subject's right) eye boxes relative to the face box."""
        found = self._eye.detectMultiScale(roi, self.scale_factor, self.min_neighbors,
                                           minSize=(max(1, face_w // 8),) * 2,
                                           maxSize=(max(1, face_w // 2),) * 2)
        image_left: Box | None = None  # the subject's right eye
        image_right: Box | None = None
        for ex, ey, ew, eh in sorted(found, key=lambda e: -int(e[2]) * int(e[3])):
            box = (int(ex), int(ey), int(ew), int(eh))
            if ex + ew / 2 < face_w / 2:
                image_left = image_left or box
            else:
                image_right = image_right or box
        return image_right, image_left


def _cascade(name: str) -> cv2.CascadeClassifier:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or folder is None:
        raise DetectorUnavailable(
            f"OpenCV {cv2.__version__} has no bundled Haar cascades (OpenCV 5 moved them out "
            "of the main package); install opencv-python-headless<5, e.g. 4.14.0.94")
    cascade = cv2.CascadeClassifier(str(folder) + name)
    if cascade.empty():
        raise DetectorUnavailable(f"could not load {folder}{name} (OpenCV {cv2.__version__}); "
                                  "install opencv-python-headless<5, which ships it")
    return cascade
