"""``python -m tinytracker.report runs=<dir, glob or wandb://entity/project/sweep> out_dir=<dir>``.

Writes ``pareto.png`` (error against INT8 size, the Pareto front, the papers' reference
points), ``pareto.md`` (the Pareto-optimal runs with their overrides) and ``runs.csv`` (every
run's point) to ``out_dir``.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from tinytracker.cli import parse_args
from tinytracker.report.figure import plot_front
from tinytracker.report.pareto import pareto_front
from tinytracker.report.references import KB, REFERENCES
from tinytracker.report.runs import ReportError, RunResult, load_runs
from tinytracker.report.table import markdown_report

PROG = "tinytracker.report"


@dataclass
class ReportConfig:
    runs: str = MISSING         # run dir, folder of runs (a sweep's out_dir), glob, or wandb://e/p/id
    out_dir: str = MISSING
    error_metric: str = "test/error_cm"
    size_metric: str = "model/size_int8_bytes"
    references: bool = True     # the TinyTracker and iTracker paper points (GazeCapture)
    title: str = "Gaze error vs INT8 model size"


def report(cfg: ReportConfig) -> dict[str, Path]:
    """Load the runs, compute their front, write the figure, table and CSV; returns the paths."""
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
        "csv": _write_csv(results, set(front), out / "runs.csv"),
    }
    paths["md"].write_text(markdown_report(results, front, runs.skipped, cfg.runs,
                                           cfg.error_metric, cfg.size_metric))
    return paths


def _write_csv(runs: list[RunResult], front: set[int], path: Path) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "error_cm", "size_int8_bytes", "size_int8_kb", "pareto", "model",
                    "overrides", "source"])
        for i, r in enumerate(runs):
            w.writerow([r.name, r.error_cm, r.size_bytes, round(r.size_bytes / KB, 2), i in front,
                        r.metrics.get("model/name", ""), " ".join(r.overrides), r.source])
    return path


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(ReportConfig, argv, prog=PROG)
    try:
        paths = report(cfg)
    except ReportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(paths["md"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
