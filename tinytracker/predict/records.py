"""One prediction per frame, and ``predictions.csv`` / ``predictions.json``.

Boxes follow GazeCapture: ``face_box`` ``[x, y, w, h]`` in frame pixels, eye boxes relative
to the face box (``left_eye`` = the subject's left eye). Gaze in cm is GazeCapture's camera
coordinates; ``screen_*`` fields are present when a screen was given. A frame without a face
has ``face_found = false`` and no gaze (empty CSV cells, JSON ``null``), unless the model
takes the whole frame (``model.position=frame``), which needs no face.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Box = list[int]
SCREEN_FIELDS = ("screen_x_cm", "screen_y_cm", "screen_x_pt", "screen_y_pt", "screen_x_px",
                 "screen_y_px", "on_screen")
BOX_FIELDS = ("face_box", "left_eye_box", "right_eye_box")


@dataclass
class FramePrediction:
    frame_index: int
    source: str  # image file name or "frame NNNNN"
    face_found: bool
    face_box: Box | None = None
    left_eye_box: Box | None = None
    right_eye_box: Box | None = None
    face_grid: Box | None = None  # faceGrid.json's (X, Y, W, H), in the camera's grid frame
    x_cm: float | None = None
    y_cm: float | None = None
    screen: dict[str, Any] = field(default_factory=dict)  # Screen.locate, when a screen is set
    note: str = ""  # why there is no gaze, when there is none

    def row(self) -> dict[str, Any]:
        """Flat record: boxes as ``face_x``..., screen fields inline, ``None`` for missing."""
        out: dict[str, Any] = {"frame_index": self.frame_index, "source": self.source,
                               "face_found": self.face_found}
        for name in BOX_FIELDS:
            box = getattr(self, name)
            prefix = name.removesuffix("_box")
            for k, key in enumerate("xywh"):
                out[f"{prefix}_{key}"] = box[k] if box is not None else None
        out.update(x_cm=self.x_cm, y_cm=self.y_cm)
        out.update({k: self.screen.get(k) for k in SCREEN_FIELDS})
        out["note"] = self.note
        return out

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        screen = data.pop("screen")
        data.update({k: screen.get(k) for k in SCREEN_FIELDS})
        return data


def write_csv(records: list[FramePrediction], path: Path) -> Path:
    rows = [r.row() for r in records]
    header = list(rows[0]) if rows else list(FramePrediction(0, "", False).row())
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return path


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    return value


def write_json(summary: dict[str, Any], records: list[FramePrediction], path: Path) -> Path:
    path.write_text(json.dumps({**summary, "frames": [r.to_json() for r in records]},
                               indent=1) + "\n")
    return path
