"""The few lines a training run ends with: how good, how big, where its files are.

Built from the run's ``metrics.json`` values alone (and the paths beside them), so what is
printed is what was recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LABEL_WIDTH = 11


def format_run_summary(metrics: dict[str, Any], metrics_path: Path,
                       wandb_runs: list[str]) -> str:
    """The end-of-run summary.

    ``metrics``: what ``metrics.json`` holds (``test/error_cm``,
    ``baseline/mean_predictor_error_cm``, ``baseline/irreducible_error_cm``, ``model/*``,
    ``checkpoint``, ``tags``, ``debug_run``, ``git/*``); ``wandb_runs``: a line per W&B run
    (its directory, or URL when online).
    """
    debug = metrics.get("debug_run")
    title = "run summary"
    if debug:
        title += f": DEBUG RUN (debug={debug}), not a result"
    rows = [("test error", _test_error(metrics))]
    if metrics.get("val/error_cm") is not None:
        rows.append(("val error", f"{metrics['val/error_cm']:.3f} cm"))
    if metrics.get("train/error_cm") is not None:
        rows.append(("train error", f"{metrics['train/error_cm']:.3f} cm (last epoch)"))
    rows.append(("model", _model(metrics)))
    rows.append(("checkpoint", str(metrics.get("checkpoint") or "none saved")))
    rows.append(("metrics", str(metrics_path)))
    rows.append(("W&B run", "; ".join(wandb_runs) if wandb_runs else "none (no W&B logger)"))
    rows.append(("tags", ", ".join(metrics.get("tags") or []) or "none"))
    rows.append(("git", _git(metrics)))
    return "\n".join([title, *(f"  {k:<{LABEL_WIDTH}} {v}" for k, v in rows)])


def _test_error(metrics: dict[str, Any]) -> str:
    error = metrics.get("test/error_cm")
    if error is None:
        return "not measured (test=false)"
    text = f"{error:.3f} cm"
    refs = []
    mean = metrics.get("baseline/mean_predictor_error_cm")
    if mean:
        refs.append(f"{error / mean:.2f}x the mean predictor ({mean:.3f} cm)")
    floor = metrics.get("baseline/irreducible_error_cm")
    if floor:
        refs.append(f"{error / floor:.2f}x the irreducible floor ({floor:.3f} cm)")
    return f"{text} = {', '.join(refs)}" if refs else text


def _model(metrics: dict[str, Any]) -> str:
    parts = [str(metrics.get("model/name", "?"))]
    if metrics.get("model/params") is not None:
        parts.append(f"{metrics['model/params']:,} params")
    size = metrics.get("model/size_int8_bytes")
    if size is not None:
        parts.append(f"{size / 1000:.1f} KB int8 weights")
    return ", ".join(parts)


def _git(metrics: dict[str, Any]) -> str:
    commit = metrics.get("git/commit")
    if not commit:
        return "unknown (not a git checkout)"
    dirty = metrics.get("git/dirty")
    state = {True: "dirty: uncommitted changes", False: "clean"}.get(dirty, "state unknown")
    return f"{commit[:12]} ({state})"
