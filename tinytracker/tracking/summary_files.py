"""Flat JSON result files: a run's ``metrics.json`` and the summaries other commands write
(``pack.json``, ``bench.json``).

``metrics.json`` is flat with ``/``-separated keys (``test/error_cm``, ``model/params``...);
later stages (QAT, export, sweeps, reports) extend and read it.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from tinytracker.atomic import write_text

METRICS_FILE = "metrics.json"


def update_json_summary(path: str | os.PathLike, values: dict[str, Any]) -> Path:
    """Write (or extend) the flat JSON object at ``path``; keys already there are updated,
    not lost. Written to a temporary file first, so a reader never sees half a file."""
    path = Path(path)
    current: dict[str, Any] = {}
    if path.is_file():
        current = json.loads(path.read_text())
    current.update({k: jsonable(v) for k, v in values.items()})
    return write_text(path, json.dumps(current, indent=2, sort_keys=True) + "\n")


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write (or extend) a run's ``metrics.json`` (what sweeps and reports read)."""
    if Path(path).name != METRICS_FILE:
        raise ValueError(f"write_metrics writes a run's {METRICS_FILE}, got {path}; "
                         "write other summaries with update_json_summary")
    return update_json_summary(path, metrics)


def jsonable(value: Any) -> Any:
    """A JSON value for ``value``: tensor/NumPy scalars unwrapped, NaN/inf as null, paths as
    strings."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return str(value)
    return value
