"""Face and eye detection with OpenCV's bundled Haar cascades, in GazeCapture's conventions.

GazeCapture's boxes came from Apple's face detector; here the frontal-face and eye cascades
that ship with OpenCV (``cv2.data.haarcascades``, Viola-Jones) stand in, so nothing is
downloaded. Conventions of the dataset's ``appleFace.json`` / ``appleLeftEye.json``: the face
box ``(x, y, w, h)`` is in frame pixels, eye boxes are relative to the face box, and the left
eye is the *subject's* left eye, which is on the image's right in an unmirrored camera frame.
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
class Detection:
    face: Box | None  # frame pixels; None: no face found
    left_eye: Box | None = None  # the subject's left eye, relative to the face box
    right_eye: Box | None = None


@dataclass
class HaarDetector:
    """The largest frontal face of a frame and up to one eye on each side of it.

    ``min_face_fraction``: smallest face side, as a fraction of the frame's shorter side.
    ``scale_factor`` / ``min_neighbors``: OpenCV's ``detectMultiScale`` parameters.
    """

    min_face_fraction: float = 0.1
    scale_factor: float = 1.1
    min_neighbors: int = 5

    def __post_init__(self) -> None:
        self._face = _cascade(FACE_CASCADE)
        self._eye = _cascade(EYE_CASCADE)

    def __call__(self, frame: np.ndarray) -> Detection:
        """Detect in an RGB (or grey) uint8 frame."""
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) if frame.ndim == 3 else frame
        grey = cv2.equalizeHist(grey)
        side = max(1, int(self.min_face_fraction * min(grey.shape[:2])))
        faces = self._face.detectMultiScale(grey, self.scale_factor, self.min_neighbors,
                                            minSize=(side, side))
        if len(faces) == 0:
            return Detection(None)
        x, y, w, h = (int(v) for v in max(faces, key=lambda f: int(f[2]) * int(f[3])))
        left, right = self._eyes(grey[y:y + int(EYE_SEARCH_HEIGHT * h), x:x + w], w)
        return Detection((x, y, w, h), left, right)

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
