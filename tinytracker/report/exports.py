"""The numbers of the exports made from a run: its ``export.json`` files.

``python -m tinytracker.export`` writes ``export.json`` into its own ``out_dir``, with the
checkpoint it exported (``checkpoint``) and its ``format`` (``onnx``, ``imx500``). An export
belongs to the run whose directory holds that checkpoint (``<run>/checkpoints/*.ckpt``), or,
when the checkpoint is not under a run found, to the run whose directory holds the
``export.json``. Its entries join the run's metrics as ``export/<format>/<key>``, the names
the export gives them in the run's W&B summary, so one column name reads local runs and a
W&B sweep alike: e.g. ``export/imx500/test/error_cm`` (the IMX500-bound model's test error)
and ``export/imx500/imx500/memory_usage_bytes`` (the converter's memory report).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPORT_FILE = "export.json"
PREFIX = "export"


def export_metrics(run_dirs: Sequence[Path], search: Sequence[Path],
                   notes: list[str]) -> dict[Path, dict[str, Any]]:
    """``export/<format>/<key>`` entries by run directory, from every ``export.json`` under
    ``run_dirs`` and ``search``. Of two exports of one format for a run, the newer is read (a
    note says so); an unreadable file is noted and left out."""
    runs = sorted(run_dirs, key=lambda d: len(d.parts), reverse=True)  # deepest first
    chosen: dict[tuple[Path, str], tuple[Path, dict[str, Any]]] = {}
    for path in _export_files([*run_dirs, *search]):
        data = _read(path, notes)
        if data is None:
            continue
        owner = _owner(path, data, runs)
        if owner is None:
            continue
        key = (owner, str(data["format"]))
        if key in chosen:
            path, data = _newer(chosen[key], (path, data), notes)
        chosen[key] = (path, data)
    entries: dict[Path, dict[str, Any]] = {}
    for (owner, fmt), (_, data) in sorted(chosen.items()):
        entries.setdefault(owner, {}).update(
            {f"{PREFIX}/{fmt}/{k}": v for k, v in data.items()})
    return entries


def _export_files(folders: Sequence[Path]) -> list[Path]:
    files: set[Path] = set()
    for folder in folders:
        files.update(p.resolve() for p in folder.rglob(EXPORT_FILE))
    return sorted(files)


def _read(path: Path, notes: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        notes.append(f"{path}: not a readable {EXPORT_FILE} ({err}); its numbers are left out")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("format"), str):
        notes.append(f"{path}: expected a JSON object with a 'format' key, as "
                     "tinytracker.export writes; its numbers are left out")
        return None
    return data


def _owner(path: Path, data: dict[str, Any], runs: Sequence[Path]) -> Path | None:
    """The run the export was made from: by its checkpoint's path, else by where it lies."""
    ckpt = data.get("checkpoint")
    if isinstance(ckpt, str) and ckpt:
        found = _enclosing(Path(ckpt).expanduser().resolve(), runs)
        if found is not None:
            return found
    return _enclosing(path, runs)


def _enclosing(path: Path, runs: Sequence[Path]) -> Path | None:
    """The deepest run directory holding ``path`` (``runs`` deepest first)."""
    return next((run for run in runs if path.is_relative_to(run)), None)


def _newer(a: tuple[Path, dict[str, Any]], b: tuple[Path, dict[str, Any]],
           notes: list[str]) -> tuple[Path, dict[str, Any]]:
    new, old = sorted((a, b), key=lambda e: (e[0].stat().st_mtime, str(e[0])), reverse=True)
    notes.append(f"two {old[1]['format']} exports of one run: reading {new[0]}, "
                 f"not the older {old[0]}")
    return new
