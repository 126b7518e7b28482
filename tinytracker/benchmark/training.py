"""Training-step overhead: our Lightning loop against a plain PyTorch loop.

Both loops train copies of the same initial model on the same batches, already in memory,
with the same optimizer and thread count, so the ratio of their samples per second is the
cost of Lightning plus our module (loss, torchmetrics error, logging) per step.

Each step is timed on its own (from one batch's start to the next's), the two loops
alternate ``repeats`` times, and the throughput is the batch size over the median step time
of all timed steps. On a shared 2-core machine single steps of either loop vary by 30% in
bursts that last a few steps; the median step is what a long run sees, and is stable where a
ratio of total times of short runs was not.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence

import lightning as L
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from tinytracker.benchmark.timing import median, torch_threads
from tinytracker.models.module import GazeModule

Batch = dict[str, torch.Tensor]


class _StepClock(L.Callback):
    """Start time of every batch of one epoch, and the end of the epoch's last batch."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.end = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def lightning_step_times(module: GazeModule, batches: Sequence[Batch], warmup: int
                         ) -> list[float]:
    """Seconds per training step of a Lightning ``fit`` (everything between two batches'
    starts: fetching, the step, hooks, logging), after ``warmup`` steps."""
    clock = _StepClock()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, callbacks=[clock],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    loader = DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    bounds = [*clock.starts, clock.end]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:], strict=True)][warmup:]


def plain_step_times(module: GazeModule, batches: Sequence[Batch], warmup: int) -> list[float]:
    """The loop a PyTorch user writes for the same net: its inputs in the net's memory format
    (NHWC when ``model.channels_last``), forward, MSE, backward, optimizer step."""
    net, keys = module.net, module.input_keys
    optimizer = instantiate(dict(module.hparams["optimizer"]), params=net.parameters())
    loss_fn = torch.nn.MSELoss()
    fmt = torch.channels_last if module.channels_last else torch.contiguous_format
    net.train()
    times = []
    for batch in batches:
        start = time.perf_counter()
        inputs = [batch[k].contiguous(memory_format=fmt) if batch[k].dim() == 4 else batch[k]
                  for k in keys]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(*inputs), batch["gaze_cm"])
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times[warmup:]


def training_overhead(module: GazeModule, batches: Sequence[Batch], threads: int,
                      repeats: int, warmup: int) -> dict[str, float]:
    """Samples/s of both loops (batch size over the median step time of ``repeats``
    alternating runs), and their ratio."""
    if len(batches) <= warmup:
        raise ValueError(f"need more than warmup={warmup} batches, got {len(batches)}")
    sizes = {int(b["gaze_cm"].shape[0]) for b in batches}
    if len(sizes) != 1:
        raise ValueError(f"batches must have one size, got {sorted(sizes)}")
    batch_size = sizes.pop()
    plain: list[float] = []
    lightning: list[float] = []
    with torch_threads(threads):
        for _ in range(repeats):  # alternate, so that drift in machine load hits both alike
            plain += plain_step_times(copy.deepcopy(module), batches, warmup)
            lightning += lightning_step_times(copy.deepcopy(module), batches, warmup)
    p, lt = batch_size / median(plain), batch_size / median(lightning)
    return {"train/plain/samples_per_s": p, "train/lightning/samples_per_s": lt,
            "train/lightning_over_plain": lt / p, "train/threads": threads,
            "train/timed_steps": len(plain)}
