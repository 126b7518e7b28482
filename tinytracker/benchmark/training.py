"""Training-step overhead: our Lightning loop against a plain PyTorch loop.

Both loops train copies of the same initial model on the same batches, already in memory,
with the same optimizer and thread count, so the ratio of their samples per second is the
cost of Lightning plus our module (loss, torchmetrics error, logging) per step.

The two loops run interleaved, step by step: at the start of each Lightning batch a callback
runs (and times) the plain loop's step on the same batch, then lets Lightning run its own.
On a shared 2-core machine the speed of either loop drifts by 30% within seconds, so loops
timed one after the other (even alternating runs of a few seconds) gave ratios from 0.85 to
1.12 between identical runs; interleaved steps see the same machine. Throughput is the batch
size over the median step time of all timed steps of ``repeats`` runs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import lightning as L
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from tinytracker.benchmark.timing import median, torch_threads
from tinytracker.models.module import GazeModule

Batch = dict[str, torch.Tensor]


def plain_step(module: GazeModule) -> Callable[[Batch], None]:
    """One step of the loop a PyTorch user writes for ``module``'s net: inputs in the net's
    memory format (NHWC when ``model.channels_last``), forward, MSE, backward, optimizer step."""
    net, keys = module.net, module.input_keys
    optimizer = instantiate(dict(module.hparams["optimizer"]), params=net.parameters())
    loss_fn = torch.nn.MSELoss()
    fmt = torch.channels_last if module.channels_last else torch.contiguous_format
    net.train()

    def step(batch: Batch) -> None:
        inputs = [batch[k].contiguous(memory_format=fmt) if batch[k].dim() == 4 else batch[k]
                  for k in keys]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(*inputs), batch["gaze_cm"])
        loss.backward()
        optimizer.step()

    return step


class _Interleave(L.Callback):
    """Before each Lightning batch, one timed plain step on the same batch."""

    def __init__(self, step: Callable[[Batch], None], batches: Sequence[Batch]) -> None:
        self.step, self.batches = step, batches
        self.entered: list[float] = []  # callback entered: the previous Lightning step ended
        self.left: list[float] = []     # callback left: this Lightning step starts
        self.plain: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.entered.append(time.perf_counter())
        t0 = time.perf_counter()
        self.step(self.batches[batch_idx])
        self.left.append(time.perf_counter())
        self.plain.append(self.left[-1] - t0)


def interleaved_step_times(module: GazeModule, batches: Sequence[Batch], warmup: int
                           ) -> tuple[list[float], list[float]]:
    """Seconds per step of the plain loop and of a Lightning ``fit`` (everything from one
    batch's start to the next's: the step, hooks, logging, fetching), after ``warmup`` steps.
    Each loop trains its own copy of ``module``."""
    clock = _Interleave(plain_step(copy.deepcopy(module)), batches)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, callbacks=[clock],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    loader = DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(copy.deepcopy(module), train_dataloaders=loader)
    # Lightning step k: from leaving the callback of batch k to entering that of batch k + 1
    lightning = [b - a for a, b in zip(clock.left[:-1], clock.entered[1:], strict=True)]
    return clock.plain[warmup:-1], lightning[warmup:]


def training_overhead(module: GazeModule, batches: Sequence[Batch], threads: int,
                      repeats: int, warmup: int) -> dict[str, float]:
    """Samples/s of both loops (batch size over the median step time of ``repeats``
    interleaved runs), and their ratio."""
    if len(batches) <= warmup + 1:
        raise ValueError(f"need more than warmup + 1 = {warmup + 1} batches, got {len(batches)}")
    sizes = {int(b["gaze_cm"].shape[0]) for b in batches}
    if len(sizes) != 1:
        raise ValueError(f"batches must have one size, got {sorted(sizes)}")
    batch_size = sizes.pop()
    plain: list[float] = []
    lightning: list[float] = []
    with torch_threads(threads):
        for _ in range(repeats):
            p, lt = interleaved_step_times(module, batches, warmup)
            plain += p
            lightning += lt
    p, lt = batch_size / median(plain), batch_size / median(lightning)
    return {"train/plain/samples_per_s": p, "train/lightning/samples_per_s": lt,
            "train/lightning_over_plain": lt / p, "train/threads": threads,
            "train/timed_steps": len(plain)}
