"""Training-step overhead: our Lightning loop against a plain PyTorch loop.

Both loops train copies of the same initial model on the same batches, already in memory,
with the same optimizer and thread count, so the ratio of their samples per second is the
cost of Lightning plus our module (loss, torchmetrics error, logging) per step.
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
    """Times the batches after the first ``warmup`` of one epoch."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end = warmup, 0.0, 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.end = time.perf_counter()


def lightning_samples_per_s(module: GazeModule, batches: Sequence[Batch], warmup: int) -> float:
    clock = _StepClock(warmup)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, callbacks=[clock],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0,
    )
    loader = DataLoader(list(batches), batch_size=None, shuffle=False)
    trainer.fit(module, train_dataloaders=loader)
    return _samples(batches[warmup:]) / (clock.end - clock.start)


def plain_samples_per_s(module: GazeModule, batches: Sequence[Batch], warmup: int) -> float:
    net, keys = module.net, module.input_keys
    optimizer = instantiate(dict(module.hparams["optimizer"]), params=net.parameters())
    loss_fn = torch.nn.MSELoss()
    net.train()
    start = 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(net(*[batch[k] for k in keys]), batch["gaze_cm"])
        loss.backward()
        optimizer.step()
    return _samples(batches[warmup:]) / (time.perf_counter() - start)


def _samples(batches: Sequence[Batch]) -> int:
    return sum(int(b["gaze_cm"].shape[0]) for b in batches)


def training_overhead(module: GazeModule, batches: Sequence[Batch], threads: int,
                      repeats: int, warmup: int) -> dict[str, float]:
    """Median samples/s of both loops over ``repeats`` alternating runs, and their ratio."""
    if len(batches) <= warmup:
        raise ValueError(f"need more than warmup={warmup} batches, got {len(batches)}")
    plain, lightning = [], []
    with torch_threads(threads):
        for _ in range(repeats):  # alternate, so that drift in machine load hits both alike
            plain.append(plain_samples_per_s(copy.deepcopy(module), batches, warmup))
            lightning.append(lightning_samples_per_s(copy.deepcopy(module), batches, warmup))
    p, lt = median(plain), median(lightning)
    return {"train/plain/samples_per_s": p, "train/lightning/samples_per_s": lt,
            "train/lightning_over_plain": lt / p, "train/threads": threads}
