"""The report's files from its runs: ``pareto.png``, ``pareto.md`` and ``runs.csv``."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from tinytracker.report.figure import plot_front
from tinytracker.report.pareto import pareto_front
from tinytracker.report.references import KB, REFERENCES
from tinytracker.report.runs import ReportError, RunResult, load_runs
from tinytracker.report.table import markdown_report

PROG = "tinytracker.report"


@dataclass
class ReportConfig:
    """``python -m tinytracker.report`` arguments."""

    runs: str = MISSING         # run dir, folder of runs (a sweep's out_dir), glob, or wandb://e/p/id
    out_dir: str = MISSING
    error_metric: str = "test/error_cm"
    size_metric: str = "model/size_int8_bytes"
    references: bool = True     # the TinyTracker and iTracker paper points (GazeCapture)
    title: str = "Gaze error vs INT8 model size"


def build_report(cfg: ReportConfig) -> dict[str, Path]:
    """Load the runs, compute their front, write the figure, table and CSV; returns the paths
    by kind (``png``, ``md``, ``csv``)."""
    runs = load_runs(cfg.runs, cfg.error_metric, cfg.size_metric)
    for s in runs.skipped:
        print(f"{PROG}: skipped {s.source}: {s.reason}", file=sys.stderr)
    if not runs.results:
        raise ReportError(f"runs={cfg.runs}: none of the {len(runs.skipped)} run(s) found has "
                          f"numeric {cfg.error_metric} and {cfg.size_metric}")
    results = runs.results
    front = pareto_front([(r.size_bytes, r.error_cm) for r in results])
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "png": plot_front(results, front, REFERENCES if cfg.references else (),
                          out / "pareto.png", cfg.title),
        "md": out / "pareto.md",
        "csv": write_runs_csv(results, set(front), out / "runs.csv"),
    }
    paths["md"].write_text(markdown_report(results, front, runs.skipped, cfg.runs,
                                           cfg.error_metric, cfg.size_metric))
    return paths


def write_runs_csv(runs: list[RunResult], front: set[int], path: Path) -> Path:
    """Every run's point, whether it is on the front, and what made it."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "error_cm", "size_int8_bytes", "size_int8_kb", "pareto", "model",
                    "overrides", "source"])
        for i, r in enumerate(runs):
            w.writerow([r.name, r.error_cm, r.size_bytes, round(r.size_bytes / KB, 2), i in front,
                        r.metrics.get("model/name", ""), " ".join(r.overrides), r.source])
    return path
