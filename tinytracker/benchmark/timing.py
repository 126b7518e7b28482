"""Repeat-and-median timing, and thread control shared by every benchmark."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile_ms(samples_s: list[float], q: float) -> float:
    ordered = sorted(samples_s)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k] * 1e3


def latencies_s(run: Callable[[], object], warmup: int, runs: int) -> list[float]:
    """Wall time of each of ``runs`` calls of ``run`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
