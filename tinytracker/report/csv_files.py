"""The report's CSV files: ``runs.csv`` (every run's point) and ``configs.csv`` (every
configuration's numbers: mean, std and n of each column, its seeds)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from tinytracker.report.columns import TableSpec
from tinytracker.report.references import KB
from tinytracker.report.runs import RunResult
from tinytracker.report.seeds import Configuration, missing_seeds, run_seed


def write_runs_csv(runs: Sequence[RunResult], configs: Sequence[Configuration],
                   front: set[int], path: Path) -> Path:
    """Every run's point, whether its configuration is on the front, what made it, and which
    configuration (``config``: its runs' names) and seed it belongs to."""
    config_of = {id(r): (i, c) for i, c in enumerate(configs) for r in c.runs}
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "error_cm", "size_int8_bytes", "size_int8_kb", "pareto", "model",
                    "overrides", "source", "config", "seed"])
        for r in runs:
            i, config = config_of[id(r)]
            w.writerow([r.name, r.error_cm, r.size_bytes, round(r.size_bytes / KB, 2),
                        i in front, r.metrics.get("model/name", ""), " ".join(r.overrides),
                        r.source, config.name, _blank(run_seed(r))])
    return path


def write_configs_csv(configs: Sequence[Configuration], spec: TableSpec, front: set[int],
                      path: Path) -> Path:
    """One row per configuration: for each column ``<name> mean``, ``<name> std`` (sample
    std, ddof=1; empty for one run, never 0) and ``<name> n``; raw values, not rounded."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        head = ["config", "runs", "seeds", "missing_seeds", "pareto"]
        for c in spec.columns:
            head += [f"{c.csv_name} mean", f"{c.csv_name} std", f"{c.csv_name} n"]
        w.writerow(head + [t.label for t in spec.text] + ["overrides"])
        for i, config in enumerate(configs):
            row: list[object] = [config.name, len(config.runs),
                                 " ".join(_blank(s) for s in config.seeds),
                                 " ".join(map(str, missing_seeds(config, configs))), i in front]
            for column in spec.columns:
                stat = column.stat(config)
                row += ["", "", 0] if stat is None else [stat.mean, _blank(stat.std), stat.n]
            row += [config.text(t.key, t.default) for t in spec.text]
            w.writerow(row + [" ".join(config.overrides())])
    return path


def _blank(value: object) -> str:
    return "" if value is None else str(value)
