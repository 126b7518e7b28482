"""Data loading throughput per CPU core, against what the training step consumes.

The rate is :func:`tinytracker.data.throughput.loader_rate` (one loader core, the training
split in training batches), the same measurement ``python -m tinytracker.data.bench`` reports.
A loader is no bottleneck when ``cores x rate`` exceeds the training step's samples per second.
"""

from __future__ import annotations

from tinytracker.data.throughput import loader_rate


def loading_figures(name: str, train_dataset, plain_dataset, samples: int, repeats: int,
                    batch_size: int, train_samples_per_s: float | None) -> dict[str, float]:
    """``train_dataset`` augments as in training; ``plain_dataset`` is the same without."""
    rate = loader_rate(train_dataset, samples, repeats, batch_size)["samples_per_s_per_core"]
    out = {f"data/{name}/samples_per_s_per_core": rate,
           f"data/{name}/no_augment/samples_per_s_per_core":
               loader_rate(plain_dataset, samples, repeats, batch_size)["samples_per_s_per_core"]}
    if train_samples_per_s:
        # loader cores needed to keep the training step fed (< 1: one core is plenty)
        out[f"data/{name}/cores_to_feed_training"] = train_samples_per_s / rate
    return out
