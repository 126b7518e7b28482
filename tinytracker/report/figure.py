"""The accuracy-versus-size scatter: every configuration (a run, or the mean of runs that differ
only by seed, with an error bar), the Pareto front, the papers' reference points."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

from tinytracker.report.references import IMX500_MODEL_BYTES, KB, Reference  # noqa: E402

# The IMX500 memory line is drawn when the largest plotted size reaches this share of it.
_NEAR_LIMIT = 0.25
_REFERENCE_MARKERS = ("*", "D", "s", "^")


@dataclass(frozen=True)
class Point:
    """One configuration on the plot: its mean size and error, the error's std over seeds."""

    name: str
    size_bytes: float
    error_cm: float
    error_std_cm: float | None = None   # None: one run, no error bar
    data: str = "?"


def plot_front(points: Sequence[Point], front: Sequence[int], references: Sequence[Reference],
               path: Path, title: str) -> Path:
    """Write the scatter of error (cm) against INT8 size (KB) to ``path`` (PNG); points with
    an std get an error bar (± 1 std)."""
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=150)
    on_front = set(front)
    rest = [p for i, p in enumerate(points) if i not in on_front]
    data = ", ".join(sorted({p.data for p in points}))
    grouped = any(p.error_std_cm is not None for p in points)
    what = "our configurations, mean ± std over seeds" if grouped else "our runs"
    ax.scatter([p.size_bytes / KB for p in rest], [p.error_cm for p in rest], s=22,
               color="tab:blue", alpha=0.55, label=f"{what} (data: {data})")
    _error_bars(ax, rest, "tab:blue")
    fx = [points[i].size_bytes / KB for i in front]
    fy = [points[i].error_cm for i in front]
    ax.plot(fx, fy, drawstyle="steps-post", color="tab:red", lw=1.2, zorder=2)
    ax.scatter(fx, fy, s=40, color="tab:red", edgecolor="black", lw=0.5, zorder=3,
               label=f"Pareto front ({len(front)} of {len(points)} "
                     f"{'configurations' if grouped else 'runs'})")
    _error_bars(ax, [points[i] for i in front], "tab:red")
    for i in front:
        ax.annotate(points[i].name, (points[i].size_bytes / KB, points[i].error_cm),
                    textcoords="offset points", xytext=(5, 4), fontsize=7, color="tab:red")

    for ref, marker in zip(references, _REFERENCE_MARKERS, strict=False):
        ax.scatter([ref.size_bytes / KB], [ref.error_cm], marker=marker, s=90, color="black",
                   zorder=4, label=f"{ref.label}: {ref.error_cm:.2f} cm, "
                                   f"{ref.size_bytes / KB:.0f} KB")
        ax.annotate(ref.label.split(" (")[0], (ref.size_bytes / KB, ref.error_cm),
                    textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)

    sizes = [p.size_bytes for p in points] + [ref.size_bytes for ref in references]
    if max(sizes) >= _NEAR_LIMIT * IMX500_MODEL_BYTES:
        ax.axvline(IMX500_MODEL_BYTES / KB, color="tab:gray", ls="--", lw=1,
                   label="IMX500 model memory (8 MB)")
    if max(sizes) / max(min(sizes), 1) > 10:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())  # 100, 1000, not 10^2, 10^3
    ax.set_xlabel("INT8 size (KB, 1 KB = 1024 bytes)")
    ax.set_ylabel("test error (cm)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    if references:
        fig.text(0.01, 0.01, "Reference points are GazeCapture test errors; runs on other data "
                 "(e.g. synthetic) are comparable in size, not in absolute error.",
                 fontsize=7, style="italic")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _error_bars(ax: plt.Axes, points: Sequence[Point], color: str) -> None:
    with_std = [p for p in points if p.error_std_cm is not None]
    if with_std:
        ax.errorbar([p.size_bytes / KB for p in with_std], [p.error_cm for p in with_std],
                    yerr=[p.error_std_cm for p in with_std], fmt="none", ecolor=color,
                    elinewidth=1, capsize=3, alpha=0.8, zorder=2)
