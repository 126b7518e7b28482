"""Data loading throughput of one CPU core: the one measurement behind every loader number.

Training batches are built exactly as a DataLoader worker builds them (the dataset's
``__getitems__`` where it has one, as the packed format does, else one ``__getitem__`` per
sample; then the collate function), in one process with one torch and one OpenCV thread, so
the rate is that of one loader core (N workers on N free cores scale it by about N). A first,
untimed pass brings the files into the page cache, where they are from the second epoch on (a
cold read would measure the disk). The rate is counted against the process's CPU time, which a
busy machine inflates less than wall time (both are reported), and the best of ``rounds``
passes is kept, so a burst of load from other processes is discarded.
"""

from __future__ import annotations

import time
from typing import Any

import cv2
import torch

from tinytracker.data.dataset import collate


def load_batch(dataset, indices: list[int]) -> Any:
    """One batch as ``torch.utils.data``'s map-style fetcher builds it in a worker."""
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices) if getitems else [dataset[i] for i in indices]
    return collate(items)


def loader_rate(dataset, samples: int, rounds: int, batch_size: int) -> dict[str, float]:
    """``samples_per_s_per_core`` (CPU time) and ``samples_per_s_wall`` of the best of
    ``rounds`` passes over the first ``samples`` samples of ``dataset``, in batches."""
    n = min(samples, len(dataset))
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    best = {"samples_per_s_per_core": 0.0, "samples_per_s_wall": 0.0}
    try:
        for indices in batches:  # warm-up: lazy imports, page cache
            load_batch(dataset, indices)
        for _ in range(max(1, rounds)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for indices in batches:
                load_batch(dataset, indices)
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if n / max(cpu, 1e-9) > best["samples_per_s_per_core"]:
                best = {"samples_per_s_per_core": n / max(cpu, 1e-9),
                        "samples_per_s_wall": n / max(wall, 1e-9)}
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    return best
