"""Screens: where a gaze point in camera coordinates (cm) lands on a device's screen.

GazeCapture's camera coordinates (Krafka et al., CVPR 2016): origin at the camera, X to the
right and Y up as the subject looks at the screen, in cm. For a portrait device (GazeCapture
orientation 1, the dataset's ``cam2screen``)::

    screen_x_cm = XCam + camera_to_screen_x_cm      (from the screen's left edge)
    screen_y_cm = -YCam - camera_to_screen_y_cm     (from the screen's top edge, downwards)

and points are ``screen_cm / screen_size_cm * screen_size_pt`` (GazeCapture's ``XPts``/
``YPts`` are in points); pixels are points times the device's pixels per point. A screen in
another orientation is given explicitly, with its own size and camera offsets.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tinytracker.data.gazecapture import device_geometry

# Portrait screen size in points and native pixels per point of GazeCapture's devices, from
# Apple's iOS device display specifications. iPhone 6(s) Plus render 414x736 pt at 3x and
# downsample to a 1080x1920 panel: 1080/414 physical pixels per point. GazeCapture's
# "iPad Mini" does not say which generation: 2x is the Retina iPad mini 2/3 (the first one,
# 1x, has the same 768x1024 pt screen).
SCREEN_POINTS: dict[str, tuple[int, int, float]] = {
    "iPhone 4s": (320, 480, 2.0),
    "iPhone 5": (320, 568, 2.0),
    "iPhone 5c": (320, 568, 2.0),
    "iPhone 5s": (320, 568, 2.0),
    "iPhone 6": (375, 667, 2.0),
    "iPhone 6s": (375, 667, 2.0),
    "iPhone 6 Plus": (414, 736, 1080 / 414),
    "iPhone 6s Plus": (414, 736, 1080 / 414),
    "iPad 2": (768, 1024, 1.0),
    "iPad 3": (768, 1024, 2.0),
    "iPad 4": (768, 1024, 2.0),
    "iPad Air": (768, 1024, 2.0),
    "iPad Air 2": (768, 1024, 2.0),
    "iPad Mini": (768, 1024, 2.0),
}


@dataclass(frozen=True)
class Screen:
    """A screen in the camera's plane; lengths in cm, sizes in points (``None``: unknown)."""

    name: str
    camera_to_screen_x_cm: float  # camera -> the screen's left edge, along x
    camera_to_screen_y_cm: float  # camera -> the screen's top edge, along -y
    width_cm: float
    height_cm: float
    width_pt: float | None = None
    height_pt: float | None = None
    px_per_pt: float = 1.0

    def __post_init__(self) -> None:
        if self.width_cm <= 0 or self.height_cm <= 0:
            raise ValueError(f"screen size must be positive, got {self.width_cm} x "
                             f"{self.height_cm} cm")

    def locate(self, x_cm: float, y_cm: float) -> dict[str, Any]:
        """Screen position of the camera-coordinate gaze point ``(x_cm, y_cm)``."""
        sx = x_cm + self.camera_to_screen_x_cm
        sy = -y_cm - self.camera_to_screen_y_cm
        out: dict[str, Any] = {"screen_x_cm": sx, "screen_y_cm": sy,
                               "on_screen": 0 <= sx <= self.width_cm and 0 <= sy <= self.height_cm}
        if self.width_pt is not None and self.height_pt is not None:
            x_pt = sx / self.width_cm * self.width_pt
            y_pt = sy / self.height_cm * self.height_pt
            out.update(screen_x_pt=x_pt, screen_y_pt=y_pt, screen_x_px=x_pt * self.px_per_pt,
                       screen_y_px=y_pt * self.px_per_pt)
        return out

    def to_camera(self, screen_x_cm: Any, screen_y_cm: Any) -> tuple[Any, Any]:
        """Camera coordinates (cm) of a point given from the screen's top-left corner (cm);
        the inverse of :meth:`locate`."""
        return (screen_x_cm - self.camera_to_screen_x_cm,
                -(screen_y_cm + self.camera_to_screen_y_cm))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


PRESETS = {_key(name): name for name in SCREEN_POINTS}


def preset(name: str) -> Screen:
    """A GazeCapture device by name (case, spaces, ``_`` and ``-`` ignored: ``iphone_6``)."""
    device = PRESETS.get(_key(name))
    geometry = device_geometry(device) if device else None
    if geometry is None:
        raise ValueError(f"unknown screen preset {name!r}; presets: "
                         f"{', '.join(SCREEN_POINTS)}; or give screen_width_cm, "
                         "screen_height_cm, camera_to_screen_x_cm, camera_to_screen_y_cm")
    w_pt, h_pt, scale = SCREEN_POINTS[device]
    return Screen(device, geometry.camera_to_screen_x_cm, geometry.camera_to_screen_y_cm,
                  geometry.screen_w_cm, geometry.screen_h_cm, w_pt, h_pt, scale)


def custom(width_cm: float, height_cm: float, camera_to_screen_x_cm: float,
           camera_to_screen_y_cm: float, width_px: int | None = None,
           height_px: int | None = None) -> Screen:
    """An explicit screen; with pixel sizes, points are pixels (1 px per pt)."""
    if (width_px is None) != (height_px is None):
        raise ValueError("give both screen_width_px and screen_height_px, or neither")
    return Screen("custom", camera_to_screen_x_cm, camera_to_screen_y_cm, width_cm, height_cm,
                  width_px, height_px, 1.0)
