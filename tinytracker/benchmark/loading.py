"""Data loading throughput per CPU core, against what the training step consumes.

One process, one thread for OpenCV and PyTorch: samples per second of the training split's
``Dataset`` made into training batches exactly as a DataLoader worker makes them (the
dataset's ``__getitems__`` where it has one, as the packed format does, else one
``__getitem__`` per sample; then the collate function) is the rate of one loader core. A
loader is no bottleneck when ``cores x rate`` exceeds the training step's samples per second.
"""

from __future__ import annotations

import time

import cv2

from tinytracker.benchmark.timing import median, torch_threads
from tinytracker.data.dataset import collate


def load_batch(dataset, indices: list[int]):
    """One batch as ``torch.utils.data``'s map-style fetcher builds it in a worker."""
    getitems = getattr(dataset, "__getitems__", None)
    items = getitems(indices) if getitems else [dataset[i] for i in indices]
    return collate(items)


def dataset_samples_per_s(dataset, samples: int, repeats: int, batch_size: int) -> float:
    n = min(samples, len(dataset))
    batches = [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]
    rates = []
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with torch_threads(1):
            # warm-up pass: lazy imports, and the files into the page cache, where they are
            # from the second epoch on (a cold first read would measure the disk instead)
            for indices in batches:
                load_batch(dataset, indices)
            for _ in range(repeats):
                t0 = time.perf_counter()
                for indices in batches:
                    load_batch(dataset, indices)
                rates.append(n / (time.perf_counter() - t0))
    finally:
        cv2.setNumThreads(cv2_threads)
    return median(rates)


def loading_figures(name: str, train_dataset, plain_dataset, samples: int, repeats: int,
                    batch_size: int, train_samples_per_s: float | None) -> dict[str, float]:
    """``train_dataset`` augments as in training; ``plain_dataset`` is the same without."""
    rate = dataset_samples_per_s(train_dataset, samples, repeats, batch_size)
    out = {f"data/{name}/samples_per_s_per_core": rate,
           f"data/{name}/no_augment/samples_per_s_per_core":
               dataset_samples_per_s(plain_dataset, samples, repeats, batch_size)}
    if train_samples_per_s:
        # loader cores needed to keep the training step fed (< 1: one core is plenty)
        out[f"data/{name}/cores_to_feed_training"] = train_samples_per_s / rate
    return out
