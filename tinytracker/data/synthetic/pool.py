"""Subjects written in-process or by a pool of spawned processes; the output is the same."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
from tqdm import tqdm

from tinytracker.data.synthetic.params import SyntheticParams
from tinytracker.data.synthetic.recording import SubjectResult, generate_subject


def run_subjects(params: SyntheticParams, out: Path, splits: list[str], workers: int,
                 progress: bool) -> list[SubjectResult]:
    """Write every subject's recording into ``out``; results in subject order."""
    bar = tqdm(total=params.subjects, desc="synthetic", unit="subject", disable=not progress)
    args = [(params, out, i, splits[i]) for i in range(params.subjects)]
    results = []
    with bar:
        if workers <= 1:
            for a in args:
                results.append(generate_subject(*a))
                bar.update()
            return results
        ctx = multiprocessing.get_context("spawn")  # fork would copy a caller's threads
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
            for result in pool.map(_generate_subject_star, args):
                results.append(result)
                bar.update()
    return results


def _init_worker() -> None:
    cv2.setNumThreads(1)  # one process per core already; avoid oversubscription


def _generate_subject_star(args: tuple) -> SubjectResult:
    return generate_subject(*args)
