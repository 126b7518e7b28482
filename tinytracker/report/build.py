"""The report's files from its runs: ``pareto.png``, ``pareto.md``, ``runs.csv``,
``configs.csv`` and, for ``table=ablation``, ``ablation.md``.

Runs that differ only by seed are one configuration (:mod:`.seeds`); the front is computed on
the configurations' mean error and size.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from tinytracker.report.columns import TableSpec, table_spec
from tinytracker.report.csv_files import write_configs_csv, write_runs_csv
from tinytracker.report.figure import Point, plot_front
from tinytracker.report.pareto import pareto_front
from tinytracker.report.references import REFERENCES
from tinytracker.report.runs import ReportError, load_runs
from tinytracker.report.seeds import Configuration, group_by_seed
from tinytracker.report.table import TableInput, markdown_report

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
    # pareto: the front's configurations (pareto.md); ablation: every configuration with float,
    # QAT INT8, IMX500 MCT and emulated camera error, params, MACs, IMX500 memory
    # (ablation.md). The metric keys each reads: tinytracker/report/columns.py.
    table: str = "pareto"
    # metric keys replacing the table's columns: metrics.json keys, or export/<format>/<key>
    # from the run's export.json; key1|key2 takes each run's first present
    columns: list[str] | None = None


def build_report(cfg: ReportConfig) -> dict[str, Path]:
    """Load the runs, group them by seed, compute the front on the means, write the files;
    returns the paths by kind (``png``, ``md``, ``csv``, ``configs_csv``)."""
    spec = table_spec(cfg.table, cfg.error_metric, cfg.size_metric, cfg.columns)
    runs = load_runs(cfg.runs, cfg.error_metric, cfg.size_metric)
    for s in runs.skipped:
        print(f"{PROG}: skipped {s.source}: {s.reason}", file=sys.stderr)
    for note in runs.notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    if not runs.results:
        raise ReportError(f"runs={cfg.runs}: none of the {len(runs.skipped)} run(s) found has "
                          f"numeric {cfg.error_metric} and {cfg.size_metric}")
    configs = group_by_seed(runs.results)
    points = [_point(c, cfg) for c in configs]
    front = pareto_front([(p.size_bytes, p.error_cm) for p in points])
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pareto = spec if spec.rows == "front" else table_spec("pareto", cfg.error_metric,
                                                          cfg.size_metric, None)
    paths = {
        "png": plot_front(points, front, REFERENCES if cfg.references else (),
                          out / "pareto.png", cfg.title),
        "md": out / "pareto.md",
        "csv": write_runs_csv(runs.results, configs, set(front), out / "runs.csv"),
        "configs_csv": write_configs_csv(configs, _columns_for_csv(spec, cfg), set(front),
                                         out / "configs.csv"),
    }
    source = TableInput(configs, front, runs.skipped, runs.notes, cfg.runs)
    paths["md"].write_text(markdown_report(
        pareto, source, f"Pareto front: {cfg.error_metric} vs {cfg.size_metric}",
        "{rows} Pareto-optimal of {of}"))
    if spec.rows == "all":
        paths["pareto_md"], paths["md"] = paths["md"], out / f"{spec.name}.md"  # md: printed
        ordered = TableInput(configs, by_first_column(configs, spec), runs.skipped, runs.notes,
                             cfg.runs)
        paths["md"].write_text(markdown_report(spec, ordered, f"{spec.name.capitalize()}",
                                               "{rows} of {of}"))
    return paths


def _point(config: Configuration, cfg: ReportConfig) -> Point:
    error, size = config.stat(cfg.error_metric), config.stat(cfg.size_metric)
    assert error is not None and size is not None  # load_runs keeps runs that have both
    return Point(config.name, size.mean, error.mean, error.std, config.text("data/name", "?"))


def by_first_column(configs: list[Configuration], spec: TableSpec) -> list[int]:
    """Indices by the first column's mean, least first; ties and missing values keep the
    order the runs were found in (missing last)."""
    if not spec.columns:
        return list(range(len(configs)))
    first = spec.columns[0]

    def key(i: int) -> tuple[bool, float]:
        stat = first.stat(configs[i])
        return (stat is None, stat.mean if stat is not None else 0.0)

    return sorted(range(len(configs)), key=key)  # sorted is stable: ties keep their order


def _columns_for_csv(spec: TableSpec, cfg: ReportConfig) -> TableSpec:
    """The table's columns, after the front's error and size when it has not got them."""
    names = {c.csv_name for c in spec.columns}
    front = table_spec("pareto", cfg.error_metric, cfg.size_metric, None).columns[:2]
    extra = tuple(c for c in front if c.csv_name not in names)
    return TableSpec(spec.name, spec.rows, extra + spec.columns, spec.text)
