"""One LightningModule for every gaze model (iTracker, TinyTracker, TinyTrackerS, quantized).

The network is built from its config (``net`` with a Hydra ``_target_``), so the module never
imports a particular architecture or quantization wrapper, and its checkpoint's
hyper-parameters are plain data that load with ``weights_only`` semantics.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MeanMetric

from tinytracker.models.metrics import EuclideanErrorCm, FrameCount


class GazeModule(L.LightningModule):
    """MSE on gaze in cm; logs mean Euclidean error in cm for train, val and test.

    ``input_spec`` records the preprocessing the network was trained with (face size, grey,
    normalisation, grid embedding), so evaluation, export and prediction rebuild it from the
    checkpoint alone. ``channels_last`` stores the network's weights and feeds its image
    inputs in NHWC memory order, which tensor-core GPUs run faster, above all with
    ``trainer.precision=bf16-mixed`` or ``16-mixed``; values are unchanged.
    """

    def __init__(
        self,
        net: dict[str, Any],
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        scheduler_interval: str = "epoch",
        input_spec: dict[str, Any] | None = None,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net: nn.Module = instantiate(net)
        self.channels_last = bool(channels_last)
        if self.channels_last:  # 4-D weights only; Module.to keeps the layout on device moves
            self.net.to(memory_format=torch.channels_last)
        self.input_keys: tuple[str, ...] = tuple(self.net.input_keys)
        self.loss_fn = nn.MSELoss()
        self.train_error = EuclideanErrorCm()
        self.val_error = EuclideanErrorCm()
        self.test_error = EuclideanErrorCm()
        self.train_loss = MeanMetric()
        self.val_frames = FrameCount()  # frames evaluated, summed across DDP ranks
        self.test_frames = FrameCount()
        self.val_best = float("inf")
        self._resumed_augment_state: dict[str, Any] | None = None  # see on_load_checkpoint

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        inputs = [batch[k] for k in self.input_keys]
        if self.channels_last:
            inputs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
                      for x in inputs]
        return self.net(*inputs)

    def forward_with_features(self, batch: dict[str, torch.Tensor]
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the net's penultimate features ``(B, D)``, one pass."""
        run = getattr(self.net, "forward_with_features", None)
        if run is None:
            raise TypeError(f"{type(self.net).__name__} does not expose its penultimate "
                            "features (forward_with_features)")
        return run(*[batch[k] for k in self.input_keys])

    def _step(self, batch: dict[str, torch.Tensor], metric: EuclideanErrorCm, stage: str):
        pred = self(batch)
        target = batch["gaze_cm"]
        loss = self.loss_fn(pred, target)
        metric.update(pred.detach(), target)
        bs = target.shape[0]
        if stage == "train":
            # a metric: the epoch mean is reduced across DDP ranks, steps stay local (no
            # collective per step as sync_dist would add)
            self.train_loss(loss.detach(), bs)
            self.log("train/loss", self.train_loss, on_step=True, on_epoch=True, prog_bar=True,
                     batch_size=bs)
        else:
            self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log(
            f"{stage}/error_cm", metric, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs
        )
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, self.train_error, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, self.val_error, "val")
        self._count(batch, self.val_frames, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, self.test_error, "test")
        self._count(batch, self.test_frames, "test")

    def _count(self, batch: dict[str, torch.Tensor], metric: FrameCount, stage: str) -> None:
        metric.update(batch["gaze_cm"])
        self.log(f"{stage}/frames", metric, on_step=False, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        """Predictions with the ids and targets of their frames (``tinytracker.evaluate``)."""
        return {"pred_cm": self(batch).float(), "gaze_cm": batch["gaze_cm"],
                "rec_num": batch["rec_num"], "frame_index": batch["frame_index"]}

    def configure_optimizers(self):
        opt_cfg = dict(self.hparams.optimizer or {"_target_": "torch.optim.Adam", "lr": 1e-3})
        optimizer = instantiate(opt_cfg, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(dict(self.hparams.scheduler), optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": self.hparams.scheduler_interval},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Plain containers only, so the checkpoint loads with torch.load(weights_only=True).
        checkpoint["hyper_parameters"] = _plain(dict(self.hparams))
        if self._trainer is not None and self.trainer.world_size == 1:
            checkpoint["random_state"] = self._random_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A run resumed from a checkpoint continues the draws of the run that wrote it (the
        # shuffling, through torch's generator, and the augmentation), so resuming a killed
        # run ends where the uninterrupted run ends. torch's generator now: Lightning draws
        # the first epoch's shuffling before on_train_epoch_start (the sanity check between
        # is isolated from the generator); the augmentation at that hook, when the training
        # set is reachable and before its first sample.
        state = checkpoint.get("random_state")
        trainer = self._trainer
        if (state is None or trainer is None or trainer.state.fn != TrainerFn.FITTING
                or trainer.world_size != 1):
            return
        torch.set_rng_state(state["torch"])
        self._resumed_augment_state = state.get("augment")

    def on_train_epoch_start(self) -> None:
        state, self._resumed_augment_state = self._resumed_augment_state, None
        augment = self._train_augment()
        if state is not None and augment is not None:
            augment.set_random_state(state)

    def _random_state(self) -> dict[str, Any]:
        augment = self._train_augment()
        return {"torch": torch.get_rng_state(),
                "augment": augment.random_state() if augment is not None else None}

    def _train_augment(self) -> Any:
        """The training set's augmentation pipeline (``SeededCompose``), if it has one."""
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        augment = getattr(dataset, "augment", None)
        return augment if hasattr(augment, "random_state") else None


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
