"""The whole dataset: claim ``out_dir``, split the subjects, write them, write SYNTHETIC.json.

The set is built in a temporary directory beside ``out_dir`` and renamed into place whole
(:func:`tinytracker.atomic.building_dir`), so a killed generator leaves the earlier set or
none, never a partial one that a later run would trust; the next run removes the leftover."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinytracker.atomic import building_dir, write_json, write_text
from tinytracker.data.synthetic.params import make_params
from tinytracker.data.synthetic.pool import run_subjects
from tinytracker.data.synthetic.subjects import assign_splits
from tinytracker.data.synthetic.summary import summarise

log = logging.getLogger(__name__)

MARKER = ".tinytracker-synthetic"  # names a directory the generator may overwrite


@dataclass
class GenerationReport:
    """What :func:`generate` wrote (the command line prints it)."""

    out_dir: Path
    subjects: int
    frames: int
    valid_frames: int
    blink_frames: int
    split_subjects: dict[str, int]
    mean_predictor_error_cm: float
    irreducible_error_cm: float
    seconds: float


def generate(out_dir: str | os.PathLike, workers: int = 1, progress: bool = True,
             **params: Any) -> GenerationReport:
    """Generate the dataset into ``out_dir``; keyword arguments are :class:`SyntheticParams`
    fields (``seed``, ``subjects``, ``frames_per_subject``...), their defaults the dataclass's.

    ``workers`` > 1 generates subjects in that many spawned processes (0: one per CPU); the
    output does not depend on it. The default stays in-process because spawning re-imports
    the caller's ``__main__``, which fails for scripts without a ``__name__`` guard."""
    start = time.perf_counter()
    p = make_params(**params)
    out = _check_out_dir(Path(out_dir))
    splits = assign_splits(p)
    workers = workers or min(os.cpu_count() or 1, p.subjects)
    with building_dir(out) as tmp:
        write_text(tmp / MARKER, "written by tinytracker.data.synthetic\n")
        results = run_subjects(p, tmp, splits, workers, progress)
        summary = summarise(p, results)
        write_json(tmp / "SYNTHETIC.json", summary, indent=1, sort_keys=True)
    ref = summary["reference_errors_cm"]
    log.info("generated %d frames of %d subjects into %s; mean-predictor error %.3f cm, "
             "irreducible %.3f cm", summary["frames"], p.subjects, out, ref["mean_predictor"],
             ref["irreducible"])
    return GenerationReport(
        out_dir=out,
        subjects=p.subjects,
        frames=summary["frames"],
        valid_frames=summary["valid_frames"],
        blink_frames=summary["frames"] - summary["valid_frames"],
        split_subjects={s: len(v) for s, v in summary["splits"].items()},
        mean_predictor_error_cm=ref["mean_predictor"],
        irreducible_error_cm=ref["irreducible"],
        seconds=time.perf_counter() - start,
    )


def _check_out_dir(out: Path) -> Path:
    """An empty, new or earlier synthetic directory (replaced whole); never someone else's."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"out_dir {out} is a file; choose a new directory")
    if out.exists() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise FileExistsError(f"out_dir {out} is not empty and was not written by the "
                              "synthetic generator; choose an empty or new directory")
    return out
