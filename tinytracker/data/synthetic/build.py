"""The whole dataset: claim ``out_dir``, split the subjects, write them, write SYNTHETIC.json."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    out = _claim_out_dir(Path(out_dir))
    splits = assign_splits(p)
    workers = workers or min(os.cpu_count() or 1, p.subjects)
    results = run_subjects(p, out, splits, workers, progress)
    summary = summarise(p, results)
    (out / "SYNTHETIC.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
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


def _claim_out_dir(out: Path) -> Path:
    """Use an empty or earlier synthetic directory; never delete someone else's files."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise FileExistsError(f"out_dir {out} is not empty and was not written by the "
                                  "synthetic generator; choose an empty or new directory")
        for child in out.iterdir():
            if child.is_dir() and len(child.name) == 5 and child.name.isdigit():
                shutil.rmtree(child)
        (out / "SYNTHETIC.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by tinytracker.data.synthetic\n")
    return out
