"""The Markdown table of the Pareto-optimal runs, with the overrides that made each."""

from __future__ import annotations

from collections.abc import Sequence

from tinytracker.report.references import KB
from tinytracker.report.runs import RunResult, Skipped


def common_overrides(runs: Sequence[RunResult]) -> list[str]:
    """Overrides every run shares (shown once, above the table), in the first run's order."""
    if not runs:
        return []
    shared = set(runs[0].overrides).intersection(*(r.overrides for r in runs[1:]))
    return [o for o in runs[0].overrides if o in shared]


def markdown_report(runs: Sequence[RunResult], front: Sequence[int], skipped: Sequence[Skipped],
                    source: str, error_key: str, size_key: str) -> str:
    """Front table (least size first), then what every run shares and what was left out."""
    common = set(common_overrides(runs))
    data = sorted({str(r.metrics.get("data/name", "?")) for r in runs})
    lines = [
        f"# Pareto front: {error_key} vs {size_key}",
        "",
        f"{len(front)} Pareto-optimal of {len(runs)} runs from `{source}` "
        f"(data: {', '.join(data)}). No other run has both less error and fewer bytes.",
        "",
        "| # | run | error (cm) | INT8 size (KB) | params | MACs | model | weight bits | "
        "overrides |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, i in enumerate(front, 1):
        r = runs[i]
        own = [o for o in r.overrides if o not in common]
        lines.append(
            f"| {rank} | {r.name} | {r.error_cm:.3f} | {r.size_bytes / KB:.1f} | "
            f"{_count(r.metrics.get('model/params'))} | {_count(r.metrics.get('model/macs'))} | "
            f"{r.metrics.get('model/name', '')} | {r.metrics.get('quant/weight_bits', 'float')} | "
            f"{' '.join(f'`{o}`' for o in own) or '(none)'} |")
    lines.append("")
    if common:
        lines += ["Overrides common to all runs: "
                  + " ".join(f"`{o}`" for o in common_overrides(runs)), ""]
    lines.append("KB = 1024 bytes. INT8 size: weight kernels at their bit width (a float run's "
                 "at 8 bits), biases and normalisation parameters at 32 bits "
                 "(tinytracker/models/footprint.py).")
    if skipped:
        lines += ["", f"Skipped {len(skipped)} run(s):", ""]
        lines += [f"- `{s.source}`: {s.reason}" for s in skipped]
    return "\n".join(lines) + "\n"


def _count(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(int(value))
