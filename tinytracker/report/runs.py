"""Runs to report: local run directories (``metrics.json``) or the runs of a W&B sweep."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

WANDB_SCHEME = "wandb://"


class ReportError(ValueError):
    """Runs that cannot be read; the message names the file or source and what was expected."""


@dataclass
class RunResult:
    """One run's point on the plot and what produced it."""

    name: str                 # short label: run directory relative to the runs' common folder
    source: str               # metrics.json path or W&B run URL
    error_cm: float
    size_bytes: int
    overrides: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class Skipped:
    """A run found but left out of the plot, and why (listed in the report, never dropped)."""

    source: str
    reason: str


@dataclass
class LoadedRuns:
    """The runs ``load_runs`` found: those with both metrics, and the rest with the reason."""

    results: list[RunResult]
    skipped: list[Skipped]


def load_runs(spec: str, error_key: str, size_key: str) -> LoadedRuns:
    """Runs of ``spec``: a run directory, a folder of runs, a glob, or ``wandb://e/p/sweep``."""
    if spec.startswith(WANDB_SCHEME):
        records = wandb_sweep_records(spec)
    else:
        records = local_records(spec)
    return _plottable(records, error_key, size_key)


def metrics_files(spec: str) -> list[Path]:
    """``metrics.json`` files under ``spec`` (a path or a glob; folders are searched deeply)."""
    matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
    if not matches:
        raise ReportError(f"runs={spec}: no such file or directory (expected a run directory, a "
                          "folder of runs such as a sweep's out_dir, or a glob like 'outputs/*')")
    files: set[Path] = set()
    for match in map(Path, matches):
        if match.is_dir():
            files.update(match.rglob("metrics.json"))
        elif match.name == "metrics.json":
            files.add(match)
    if not files:
        raise ReportError(f"runs={spec}: no metrics.json under {len(matches)} matching path(s) "
                          f"(first: {matches[0]}); a finished tinytracker.train run writes one")
    return sorted(files)


@dataclass
class _RunRecord:
    """A run as found (local or W&B), before its metrics are checked."""

    name: str
    source: str
    metrics: dict[str, Any]
    overrides: list[str]


def local_records(spec: str) -> list[_RunRecord]:
    files = metrics_files(spec)
    dirs = [f.parent.resolve() for f in files]
    root = Path(os.path.commonpath(dirs))
    records = []
    for path, run_dir in zip(files, dirs, strict=True):
        name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        records.append(_RunRecord(name, str(path), _read_json(path), _read_overrides(run_dir)))
    return records


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: not a readable metrics.json ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    return data


def _read_overrides(run_dir: Path) -> list[str]:
    """The run's command-line overrides as Hydra recorded them (``.hydra/overrides.yaml``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as err:
        raise ReportError(f"{path}: not a readable Hydra overrides file ({err})") from err
    if not isinstance(data, list):
        raise ReportError(f"{path}: expected a list of overrides, got {type(data).__name__}")
    return [str(o) for o in data]


def wandb_sweep_records(spec: str) -> list[_RunRecord]:
    """Runs of ``wandb://<entity>/<project>/<sweep-id>`` through the W&B API (needs network)."""
    path = spec[len(WANDB_SCHEME):].strip("/")
    parts = path.split("/")
    if len(parts) != 3 or not all(parts):
        raise ReportError(f"runs={spec}: expected wandb://<entity>/<project>/<sweep-id>")
    if os.environ.get("WANDB_MODE") in ("offline", "disabled"):
        raise ReportError(
            f"runs={spec} reads the sweep from the W&B server, but WANDB_MODE="
            f"{os.environ['WANDB_MODE']}. Unset it (and log in: wandb login), or report the "
            "local run directories instead: runs=<folder of runs>")
    import wandb

    try:
        api = wandb.Api(timeout=30)
        sweep = api.sweep(path)
        params = sorted((sweep.config or {}).get("parameters") or {})
        runs = list(sweep.runs)
    except Exception as err:  # wandb raises many types (auth, network, not found)
        raise ReportError(
            f"runs={spec}: could not read the sweep from W&B ({type(err).__name__}: {err}). "
            "This needs network access and a W&B API key (wandb login, or WANDB_API_KEY); "
            "offline, report the local run directories instead: runs=<folder of runs>") from err
    records = []
    for run in runs:
        summary = getattr(run.summary, "_json_dict", None) or dict(run.summary)
        metrics = {k: v for k, v in summary.items() if not k.startswith("_")}
        overrides = [f"{k}={run.config[k]}" for k in params if k in run.config]
        records.append(_RunRecord(run.name, run.url, metrics, overrides))
    return records


def _plottable(records: list[_RunRecord], error_key: str, size_key: str) -> LoadedRuns:
    results, skipped = [], []
    for rec in records:
        error, size = rec.metrics.get(error_key), rec.metrics.get(size_key)
        missing = [k for k, v in ((error_key, error), (size_key, size)) if not _is_number(v)]
        if missing:
            skipped.append(Skipped(rec.source, f"no numeric {', '.join(missing)} "
                                               "(unfinished run, test=false or a failed test?)"))
            continue
        results.append(RunResult(rec.name, rec.source, float(error), int(size), rec.overrides,
                                 rec.metrics))
    return LoadedRuns(results, skipped)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
