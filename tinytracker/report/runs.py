"""Runs to report: local run directories (``metrics.json``) or the runs of a W&B sweep.

A local run directory is a folder holding ``metrics.json``, or a training run's saved config
(``.hydra/config.yaml``) without it: a run that crashed, was killed or is still running, which
is listed as skipped, never dropped. Each run carries the config it saved (for grouping runs
that differ only by seed, :mod:`.seeds`) and the numbers of the ``export.json`` files made from
it (:mod:`.exports`), as ``export/<format>/<key>`` like the W&B summary.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tinytracker.report.exports import export_metrics
from tinytracker.tracking import METRICS_FILE

WANDB_SCHEME = "wandb://"
SAVED_CONFIG = Path(".hydra") / "config.yaml"  # Hydra's copy of the composed config


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
    # the composed config the run saved, flattened to dotted keys; None when not saved
    config: dict[str, Any] | None = None


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
    notes: list[str] = field(default_factory=list)  # worth telling, not a reason to skip


def load_runs(spec: str, error_key: str, size_key: str) -> LoadedRuns:
    """Runs of ``spec``: a run directory, a folder of runs, a glob, or ``wandb://e/p/sweep``."""
    notes: list[str] = []
    if spec.startswith(WANDB_SCHEME):
        records = wandb_sweep_records(spec)
    else:
        records = local_records(spec, notes)
    loaded = _plottable(records, error_key, size_key)
    loaded.notes = notes
    return loaded


def run_dirs(spec: str) -> list[Path]:
    """Run directories under ``spec`` (a path or a glob; folders are searched deeply): those
    with ``metrics.json`` and training runs that saved their config but wrote no metrics."""
    matches = _matches(spec)
    found: set[Path] = set()
    for match in matches:
        if match.is_dir():
            found.update(f.parent for f in match.rglob(METRICS_FILE))
            found.update(c.parent.parent for c in match.rglob(SAVED_CONFIG.name)
                         if c.parent.name == SAVED_CONFIG.parent.name and is_training_config(c))
        elif match.name == METRICS_FILE:
            found.add(match.parent)
    if not found:
        raise ReportError(f"runs={spec}: no metrics.json under {len(matches)} matching path(s) "
                          f"(first: {matches[0]}); a finished tinytracker.train run writes one")
    return sorted({d.resolve() for d in found}, key=natural_order)


def natural_order(path: Path) -> list[tuple[int, int | str]]:
    """Sort key that puts a multirun's job 2 before job 10 (Hydra numbers them 0, 1, ...)."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", str(path)) if part]


def _matches(spec: str) -> list[Path]:
    matches = sorted(glob.glob(os.path.expanduser(spec), recursive=True))
    if not matches:
        raise ReportError(f"runs={spec}: no such file or directory (expected a run directory, a "
                          "folder of runs such as a sweep's out_dir, or a glob like 'outputs/*')")
    return [Path(m) for m in matches]


def is_training_config(path: Path) -> bool:
    """Whether ``.hydra/config.yaml`` is a training run's (an export's or evaluation's also
    saves one, but has no ``trainer``)."""
    config = _read_yaml(path, "Hydra config", dict)
    return isinstance(config, dict) and "trainer" in config


@dataclass
class _RunRecord:
    """A run as found (local or W&B), before its metrics are checked."""

    name: str
    source: str
    metrics: dict[str, Any] | None   # None: the run wrote no metrics.json
    overrides: list[str]
    config: dict[str, Any] | None = None


def local_records(spec: str, notes: list[str]) -> list[_RunRecord]:
    dirs = run_dirs(spec)
    root = Path(os.path.commonpath(dirs))
    exports = export_metrics(dirs, [m for m in _matches(spec) if m.is_dir()], notes)
    records = []
    for run_dir in dirs:
        name = str(run_dir.relative_to(root)) if run_dir != root else run_dir.name
        path = run_dir / METRICS_FILE
        metrics = {**_read_json(path), **exports.get(run_dir, {})} if path.is_file() else None
        records.append(_RunRecord(name, str(path) if path.is_file() else str(run_dir), metrics,
                                  _read_overrides(run_dir), _read_config(run_dir)))
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
    return [str(o) for o in _read_yaml(path, "Hydra overrides file", list) or []]


def _read_config(run_dir: Path) -> dict[str, Any] | None:
    """The composed config the run saved (``.hydra/config.yaml``), flattened; interpolations
    stay as written (``${seed}``), which is what two runs of one command share."""
    path = run_dir / SAVED_CONFIG
    if not path.is_file():
        return None
    return flatten(_read_yaml(path, "Hydra config", dict) or {})


def _read_yaml(path: Path, what: str, kind: type) -> Any:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ReportError(f"{path}: not a readable {what} ({err})") from err
    if data is not None and not isinstance(data, kind):
        raise ReportError(f"{path}: expected a {what} holding a {kind.__name__}, "
                          f"got {type(data).__name__}")
    return data


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


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
        # the resolved training config tinytracker.train logged (log_hyperparams)
        config = {k: v for k, v in dict(run.config).items() if not k.startswith("_")}
        records.append(_RunRecord(run.name, run.url, metrics, overrides,
                                  flatten(config) if config else None))
    return records


def _plottable(records: list[_RunRecord], error_key: str, size_key: str) -> LoadedRuns:
    results, skipped = [], []
    for rec in records:
        if rec.metrics is None:
            skipped.append(Skipped(rec.source, f"no {METRICS_FILE} (the run crashed, was killed "
                                               "or is still running; see its train.log)"))
            continue
        error, size = rec.metrics.get(error_key), rec.metrics.get(size_key)
        missing = [k for k, v in ((error_key, error), (size_key, size)) if not _is_number(v)]
        if missing:
            skipped.append(Skipped(rec.source, f"no numeric {', '.join(missing)} "
                                               "(unfinished run, test=false or a failed test?)"))
            continue
        results.append(RunResult(rec.name, rec.source, float(error), int(size), rec.overrides,
                                 rec.metrics, rec.config))
    return LoadedRuns(results, skipped)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
