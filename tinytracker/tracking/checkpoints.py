"""The run's checkpoints: Lightning's ``ModelCheckpoint`` with ``last.ckpt`` the last epoch,
written whole or not at all (:class:`AtomicCheckpointIO`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from tinytracker.atomic import write_bytes


class LastEpochCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is written at every epoch, as before Lightning 2.6.

    Lightning 2.6 writes ``last.ckpt`` only when a top-k checkpoint is written at the same step
    (``ModelCheckpoint.on_validation_end``). With ``save_top_k: 1`` that made ``last.ckpt`` a
    copy of the best epoch, so a killed run resumed with ``ckpt_path=<run>/checkpoints/last.ckpt``
    retrained the epochs after its best one. Here ``last.ckpt`` follows every epoch again; the
    top-k files are unchanged.
    """

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_not_saved(trainer)

    def _save_last_if_not_saved(self, trainer: pl.Trainer) -> None:
        # skipped when the parent saved at this step (its top-k and last) or must not save
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through :func:`tinytracker.atomic.write_bytes`.

    A checkpoint file is the old one or the new one, never half of one, after a ``kill -9``
    or a full disk; a full or read-only disk raises ``WriteError`` naming the file and the
    bytes it needs, where Lightning's own writer ends in fsspec's traceback. Local paths
    only, as the run directory is.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes(target, buffer.getvalue())
