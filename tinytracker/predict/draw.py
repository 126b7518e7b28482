"""Annotated frames: face and eye boxes, and the gaze point on a screen inset.

The inset (top-right corner) shows the camera plane seen from the subject, to scale: the
screen (when one is given), the camera (a black dot) and the gaze point (red). A gaze point
outside the inset is drawn as a hollow circle on its border.
"""

from __future__ import annotations

import cv2
import numpy as np

from tinytracker.predict.records import FramePrediction
from tinytracker.predict.screen import Screen

# RGB colours
FACE = (40, 200, 40)
LEFT_EYE = (40, 140, 255)  # the subject's left eye
RIGHT_EYE = (255, 150, 30)
GAZE = (230, 30, 30)
SCREEN = (225, 225, 225)
TEXT = (255, 255, 255)
INSET_HEIGHT = 0.42  # of the frame height
NO_SCREEN_REGION_CM = (-10.0, 10.0, -20.0, 2.0)  # x0, x1, y0, y1 around the camera
MARGIN_CM = 1.0
FONT = cv2.FONT_HERSHEY_SIMPLEX


def annotate(frame: np.ndarray, record: FramePrediction, screen: Screen | None) -> np.ndarray:
    """A copy of the RGB ``frame`` with the prediction drawn on it."""
    out = np.ascontiguousarray(frame.copy())
    scale = min(out.shape[:2]) / 500
    thick = max(1, round(2 * scale))
    if record.face_box is not None:
        fx, fy, fw, fh = record.face_box
        cv2.rectangle(out, (fx, fy), (fx + fw, fy + fh), FACE, thick, cv2.LINE_AA)
        for box, colour, label in ((record.left_eye_box, LEFT_EYE, "L"),
                                   (record.right_eye_box, RIGHT_EYE, "R")):
            if box is not None:
                x, y = fx + box[0], fy + box[1]
                cv2.rectangle(out, (x, y), (x + box[2], y + box[3]), colour, thick, cv2.LINE_AA)
                cv2.putText(out, label, (x, y - 2 * thick - 2), FONT, 0.5 * scale, colour, thick,
                            cv2.LINE_AA)
    _inset(out, record, screen, thick)
    if record.x_cm is not None:
        caption = f"gaze x={record.x_cm:+.1f} y={record.y_cm:+.1f} cm"
        at = record.screen
        if "screen_x_pt" in at:
            caption += f"  ({at['screen_x_pt']:.0f}, {at['screen_y_pt']:.0f}) pt"
    else:
        caption = record.note or "no face found"
    _caption(out, caption, scale, thick)
    return out


def _region(screen: Screen | None) -> tuple[float, float, float, float]:
    if screen is None:
        return NO_SCREEN_REGION_CM
    left, top = -screen.camera_to_screen_x_cm, -screen.camera_to_screen_y_cm
    return (min(left, 0.0) - MARGIN_CM, max(left + screen.width_cm, 0.0) + MARGIN_CM,
            top - screen.height_cm - MARGIN_CM, max(top, 0.0) + MARGIN_CM)


def _inset(out: np.ndarray, record: FramePrediction, screen: Screen | None, thick: int) -> None:
    x0, x1, y0, y1 = _region(screen)
    ih = max(40, int(INSET_HEIGHT * out.shape[0]))
    iw = min(out.shape[1] // 2, max(20, int(ih * (x1 - x0) / (y1 - y0))))
    px_per_cm = min(iw / (x1 - x0), ih / (y1 - y0))
    ox, oy = out.shape[1] - iw - 8, 8

    def to_px(x_cm: float, y_cm: float) -> tuple[int, int]:
        return (int(round(ox + (x_cm - x0) * px_per_cm)),
                int(round(oy + (y1 - y_cm) * px_per_cm)))

    roi = out[oy:oy + ih, ox:ox + iw]
    roi[:] = (roi * 0.35 + 30).astype(np.uint8)  # darkened backdrop
    if screen is not None:
        left, top = -screen.camera_to_screen_x_cm, -screen.camera_to_screen_y_cm
        cv2.rectangle(out, to_px(left, top), to_px(left + screen.width_cm, top - screen.height_cm),
                      SCREEN, -1)
    cv2.circle(out, to_px(0.0, 0.0), max(2, thick + 1), (0, 0, 0), -1, cv2.LINE_AA)
    if record.x_cm is None:
        return
    u, v = to_px(record.x_cm, record.y_cm)
    inside = ox <= u < ox + iw and oy <= v < oy + ih
    u, v = int(np.clip(u, ox, ox + iw - 1)), int(np.clip(v, oy, oy + ih - 1))
    radius = max(4, 3 * thick)
    cv2.circle(out, (u, v), radius, GAZE, -1 if inside else thick, cv2.LINE_AA)


def _caption(out: np.ndarray, text: str, scale: float, thick: int) -> None:
    size = 0.6 * max(scale, 0.5)
    (w, h), base = cv2.getTextSize(text, FONT, size, thick)
    y = out.shape[0] - 8
    cv2.rectangle(out, (4, y - h - base - 4), (12 + w, y + 2), (0, 0, 0), -1)
    cv2.putText(out, text, (8, y - base), FONT, size, TEXT, thick, cv2.LINE_AA)
