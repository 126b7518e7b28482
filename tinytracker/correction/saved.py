"""Saved per-person calibrations: the JSON file ``calibrate`` writes and ``predict`` applies.

Format (``corrections.json``)::

    {"format": "tinytracker-calibration", "version": 1,
     "model": {"path": ..., "type": "checkpoint" | "onnx", "sha256": ...},
     "kind": "affine", "points": 9,
     "subjects": {"00017": {"kind": "affine", "matrix": [[..], [..]], "bias_cm": [.., ..],
                            "calibration_frames": [...]}, ...}}

A subject is a GazeCapture recording number (5 digits). The model's hash is kept because a
correction belongs to the model it was fitted on: ``predict`` refuses a feature correction
(``ridge``, ``svr``) for another model and warns for a point correction (``offset``,
``affine``), which is still meaningful for, say, the INT8 export of the same model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinytracker.atomic import write_text
from tinytracker.checksum import file_sha256
from tinytracker.correction.corrections import CalibrationError, Correction

FORMAT = "tinytracker-calibration"
VERSION = 1


def subject_key(subject: str | int) -> str:
    """``17``, ``"17"`` and ``"00017"`` all name recording 00017."""
    text = str(subject).strip()
    return f"{int(text):05d}" if text.isdigit() else text


def save_corrections(path: Path, corrections: Mapping[int | str, Correction], model_path: str,
                     model_type: str, kind: str, points: int | None,
                     extra: Mapping[int | str, Mapping[str, Any]] | None = None) -> Path:
    """Write the corrections of every subject; ``extra`` adds per-subject fields."""
    subjects = {}
    for subject, correction in corrections.items():
        key = subject_key(subject)
        subjects[key] = {**correction.to_json(), **dict((extra or {}).get(subject, {}))}
    data = {
        "format": FORMAT,
        "version": VERSION,
        "model": {"path": str(model_path), "type": model_type,
                  "sha256": file_sha256(model_path)},
        "kind": kind,
        "points": points,
        "subjects": subjects,
    }
    write_text(path, json.dumps(data, indent=1) + "\n")
    return path


@dataclass
class SavedCalibration:
    path: Path
    model: dict[str, Any]
    kind: str
    subjects: dict[str, Correction]

    def for_subject(self, subject: str | int | None) -> tuple[str, Correction]:
        """The correction of ``subject``; may be omitted when the file holds one subject."""
        if subject is None:
            if len(self.subjects) != 1:
                raise CalibrationError(
                    f"calibration={self.path} holds {len(self.subjects)} subjects "
                    f"({_listing(self.subjects)}): choose one with calibration_subject=<id>")
            return next(iter(self.subjects.items()))
        key = subject_key(subject)
        if key not in self.subjects:
            raise CalibrationError(f"calibration_subject={subject} is not in calibration="
                                   f"{self.path}; it holds {_listing(self.subjects)}")
        return key, self.subjects[key]

    def matches(self, model_path: str | Path) -> bool:
        return self.model.get("sha256") == file_sha256(model_path)


def _listing(subjects: Mapping[str, Any]) -> str:
    names = sorted(subjects)
    return ", ".join(names[:10]) + (f", ... ({len(names)} in all)" if len(names) > 10 else "")


def load_calibration(path: str | Path) -> SavedCalibration:
    """Read a saved calibration, failing with a message that names the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"calibration={path} does not exist (expected the "
                                "corrections.json written by python -m tinytracker.calibrate)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CalibrationError(f"calibration={path} is not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"calibration={path} is not a tinytracker calibration (expected "
                               f"\"format\": \"{FORMAT}\"; it is corrections.json of a "
                               "calibrate run)")
    if data.get("version") != VERSION:
        raise CalibrationError(f"calibration={path} has version {data.get('version')!r}; this "
                               f"tinytracker reads version {VERSION}")
    subjects = data.get("subjects")
    if not isinstance(subjects, dict) or not subjects:
        raise CalibrationError(f"calibration={path} holds no subjects")
    corrections = {str(k): Correction.from_json(v, f"calibration={path}, subject {k}")
                   for k, v in subjects.items()}
    return SavedCalibration(path, dict(data.get("model") or {}), str(data.get("kind")),
                            corrections)
