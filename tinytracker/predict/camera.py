"""The camera behind a frame: what the face grid (and the grid embedding) is measured in.

In training the face grid is the face box on a 25x25 grid over a GazeCapture frame (the
phone's front camera at 480x640, :data:`~tinytracker.data.geometry.GAZECAPTURE_FRAME_PX`), so
it says where the face is as seen from the camera. A frame from another camera, or a photo,
gives that meaning only when the face box is carried into such a frame by angle, which needs
the camera's field of view (:func:`~tinytracker.data.geometry.grid_frame_box`).

* ``camera=gazecapture`` (default): the input is taken as a GazeCapture camera's frame at any
  resolution: 43.6 deg across its shorter side, principal point at its centre. A 480x640 frame
  (or any 3:4 portrait at any size) gives the grid it would have given in training; a
  16:9 webcam with the common 78 deg diagonal field of view is 43 deg across its shorter
  side, so the default fits it too.
* ``camera=photo``: the input is the grid's frame, whatever its aspect and field of view
  (before the key existed, predict always did this).
* ``camera_fov_deg=<deg>``: another camera, by its field of view across the frame's shorter
  side.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tinytracker.data.geometry import (
    GAZECAPTURE_FOCAL_PX,
    GAZECAPTURE_FOV_DEG,
    GAZECAPTURE_FRAME_PX,
)

CAMERAS: dict[str, float | None] = {"gazecapture": GAZECAPTURE_FOV_DEG, "photo": None}


@dataclass(frozen=True)
class Camera:
    name: str  # a preset of CAMERAS, or "custom"
    fov_deg: float | None  # across the frame's shorter side; None: the frame is the grid's

    def as_dict(self) -> dict[str, Any]:
        if self.fov_deg is None:
            grid = "the input frame itself (25x25 cells over it, whatever its aspect)"
        else:
            w, h = GAZECAPTURE_FRAME_PX
            grid = (f"a GazeCapture frame, {w}x{h} portrait ({h}x{w} for a landscape input), "
                    f"focal length {GAZECAPTURE_FOCAL_PX:g} px; the input's centre is the "
                    "camera's principal point")
        return {"name": self.name, "fov_deg_shorter_side": self.fov_deg, "face_grid_frame": grid}


def camera_from(name: str | None, fov_deg: float | None) -> Camera:
    """``camera=<preset>``, or ``camera_fov_deg=`` (which overrides the preset)."""
    if fov_deg is not None:
        if not 0 < fov_deg < 180:
            raise ValueError(f"camera_fov_deg must be in (0, 180) degrees, got {fov_deg}")
        return Camera("custom", float(fov_deg))
    key = (name or "gazecapture").lower()
    if key not in CAMERAS:
        raise ValueError(f"unknown camera={name!r}; presets: {', '.join(CAMERAS)}; or give "
                         "camera_fov_deg=<field of view across the frame's shorter side>")
    return Camera(key, CAMERAS[key])
