"""Gaze metrics as torchmetrics, so that they reduce correctly across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class EuclideanErrorCm(Metric):
    """Mean Euclidean distance in cm between predicted and true gaze points.

    Keeps a sum and a count (both summed across processes), so the distributed value equals
    the single-process mean over the same samples, not a mean of per-rank means.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state(
            "total_cm", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred_cm: torch.Tensor, target_cm: torch.Tensor) -> None:
        if pred_cm.shape != target_cm.shape or pred_cm.shape[-1] != 2:
            raise ValueError(
                f"expected (N, 2) predictions and targets, got "
                f"{tuple(pred_cm.shape)} and {tuple(target_cm.shape)}"
            )
        dist = torch.linalg.vector_norm(pred_cm.double() - target_cm.double(), dim=-1)
        self.total_cm += dist.sum()
        self.count += dist.numel()

    def compute(self) -> torch.Tensor:
        return (self.total_cm / self.count.clamp(min=1)).float()


class FrameCount(Metric):
    """Number of frames evaluated, summed across processes.

    Logged as ``val/frames`` and ``test/frames``: a distributed evaluation that dropped or
    repeated frames (a padding sampler) shows here as a count that differs from the split.
    """

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("frames", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, target_cm: torch.Tensor) -> None:
        self.frames += target_cm.shape[0]

    def compute(self) -> torch.Tensor:
        return self.frames
