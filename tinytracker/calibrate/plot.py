"""The error-against-points plot of a calibration run (``calibration_curve.png``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

STYLES = {"offset": "o", "affine": "s", "ridge": "^", "svr": "D"}


def plot_curves(curves: Mapping[str, Mapping[str, Any]], path: Path, title: str) -> Path:
    """One line per correction kind and model (``curves``: model label -> error_curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for m, (label, curve) in enumerate(curves.items()):
        points = curve["points"]
        line = "-" if m == 0 else ":"
        before = [(p, e) for p, e in zip(points, curve["error_cm_before"], strict=True)
                  if e is not None]
        if before:
            ax.plot(*zip(*before, strict=True), "--", color="grey" if m == 0 else "black",
                    marker="x", label=f"{label}: uncalibrated")
        for i, (kind, errors) in enumerate(curve["error_cm_after"].items()):
            pts = [(p, e) for p, e in zip(points, errors, strict=True) if e is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), line, marker=STYLES.get(kind, "o"),
                        color=colours[i % len(colours)], label=f"{label}: {kind}")
    ax.set_xlabel("calibration points per person (k)")
    ax.set_ylabel("mean error on the other frames (cm)")
    ax.set_xticks(list(next(iter(curves.values()))["points"]))
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
