"""The Markdown table of configurations (the Pareto front's, or all), with their overrides.

With one run per configuration it is the table of runs it always was; when runs differ only
by seed (:mod:`.seeds`), each row is a configuration, its numbers ``mean ± std (n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tinytracker.report.columns import MISSING, TableSpec, cell
from tinytracker.report.runs import Skipped
from tinytracker.report.seeds import Configuration, expected_seeds, missing_seeds


@dataclass(frozen=True)
class TableInput:
    """What a table is made from: every configuration, the rows to list, where they came from."""

    configs: Sequence[Configuration]
    rows: Sequence[int]                # indices into configs, in table order
    skipped: Sequence[Skipped]
    notes: Sequence[str]
    source: str


def common_overrides(configs: Sequence[Configuration]) -> list[str]:
    """Overrides every configuration shares (shown once, below the table), in the first
    configuration's order. ``seed=`` counts only where each run is its own configuration
    (the seeds column shows it otherwise)."""
    if not configs:
        return []
    seed = expected_seeds(configs) <= 1
    shared = set(configs[0].overrides(seed)).intersection(
        *(c.overrides(seed) for c in configs[1:]))
    return [o for o in configs[0].overrides(seed) if o in shared]


def markdown_report(spec: TableSpec, table: TableInput, title: str, intro: str) -> str:
    """Title, one line saying what is listed, the table, what every row shares, what was left
    out."""
    configs = table.configs
    expected = expected_seeds(configs)
    runs = sum(len(c.runs) for c in configs)
    data = sorted({c.text("data/name", "?") for c in configs})
    what = (f"{len(configs)} runs" if expected <= 1 else
            f"{len(configs)} configurations ({runs} runs; runs that differ only by seed are "
            "one configuration)")
    lines = [f"# {title}", "", f"{intro.format(rows=len(table.rows), of=what)} from "
             f"`{table.source}` (data: {', '.join(data)}).{_order(spec)}", ""]
    lines += _rows(spec, table, expected)
    lines.append("")
    common = common_overrides(configs)
    if common:
        lines += ["Overrides common to all runs: " + " ".join(f"`{o}`" for o in common), ""]
    if expected > 1:
        lines += [f"mean ± std (n) over a configuration's seeds: std is the sample standard "
                  f"deviation (ddof=1), {MISSING} for a single run; `n of {expected}` marks a "
                  f"number fewer runs have than the configurations with the most.", ""]
    lines.append("KB = 1024 bytes. INT8 size: weight kernels at their bit width (a float run's "
                 "at 8 bits), biases and normalisation parameters at 32 bits "
                 "(tinytracker/models/footprint.py).")
    if table.skipped:
        lines += ["", f"Skipped {len(table.skipped)} run(s):", ""]
        lines += [f"- `{s.source}`: {s.reason}" for s in table.skipped]
    if table.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def _order(spec: TableSpec) -> str:
    if spec.rows == "front":
        return " No other run has both less error and fewer bytes."
    first = spec.columns[0].label if spec.columns else "configuration"
    return f" Ordered by {first} (mean), ties in the order the runs were found."


def _rows(spec: TableSpec, table: TableInput, expected: int) -> list[str]:
    configs = table.configs
    common = set(common_overrides(configs))
    grouped = expected > 1
    head = ["#", "runs" if grouped else "run"] + (["seeds"] if grouped else [])
    head += [c.label for c in spec.columns] + [t.label for t in spec.text] + ["overrides"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rank, i in enumerate(table.rows, 1):
        config = configs[i]
        own = [o for o in config.overrides(seed=not grouped) if o not in common]
        row = [str(rank), config.name]
        if grouped:
            row.append(seeds_cell(config, configs))
        row += [cell(c.stat(config), c.unit, expected) for c in spec.columns]
        row += [config.text(t.key, t.default) for t in spec.text]
        row.append(" ".join(f"`{o}`" for o in own) or "(none)")
        lines.append("| " + " | ".join(row) + " |")
    return lines


def seeds_cell(config: Configuration, configs: Sequence[Configuration]) -> str:
    """``0,1,2``; ``0,1 (n=2 of 3; missing 2)`` for a configuration with fewer runs."""
    seeds = ",".join("?" if s is None else str(s) for s in config.seeds)
    expected = expected_seeds(configs)
    if len(config.runs) >= expected:
        return seeds
    missing = missing_seeds(config, configs)
    lacking = f"; missing {','.join(map(str, missing))}" if missing else ""
    return f"{seeds} (n={len(config.runs)} of {expected}{lacking})"
