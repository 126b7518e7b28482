"""Run a model over a split: a checkpoint in PyTorch, or an exported ONNX file in ONNX Runtime.

The ONNX file is read by :class:`~tinytracker.onnx_runner.OnnxRunner`, as ``predict`` reads it.
Either way the result is :class:`~tinytracker.calibrate.protocol.ModelOutputs`: gaze, labels,
ids, and the penultimate features where the model gives them (float and Brevitas nets through
``forward_with_features``; an ONNX file when exported with ``features=true``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from tqdm import tqdm

from tinytracker.calibrate.protocol import ModelOutputs
from tinytracker.models.module import GazeModule
from tinytracker.onnx_runner import OnnxRunner


def has_features(module: GazeModule) -> bool:
    return hasattr(module.net, "forward_with_features")


@torch.no_grad()
def checkpoint_outputs(module: GazeModule, loader: Iterable[Mapping[str, torch.Tensor]],
                       features: bool = True) -> ModelOutputs:
    """``module`` on every batch; features too when asked for and the net gives them."""
    module.eval()
    features = features and has_features(module)
    parts: dict[str, list[np.ndarray]] = {"gaze": [], "features": []}
    ids = _Ids()
    for batch in tqdm(loader, desc="model outputs", unit="batch"):
        if features:
            gaze, feats = module.forward_with_features(batch)
            parts["features"].append(feats.float().numpy())
        else:
            gaze = module(batch)
        parts["gaze"].append(gaze.float().numpy())
        ids.add(batch)
    return ids.outputs(np.concatenate(parts["gaze"]),
                       np.concatenate(parts["features"]) if features else None)


def onnx_outputs(runner: OnnxRunner, loader: Iterable[Mapping[str, torch.Tensor]],
                 features: bool = True) -> ModelOutputs:
    """An exported file on every batch; features too when asked for and the file has them."""
    features = features and runner.has_features
    parts: dict[str, list[np.ndarray]] = {"gaze": [], "features": []}
    ids = _Ids()
    for batch in tqdm(loader, desc="ONNX Runtime", unit="batch"):
        gaze, feats = runner.run({k: batch[k].float().numpy() for k in runner.spec.inputs},
                                 features)
        parts["gaze"].append(gaze)
        if feats is not None:
            parts["features"].append(feats)
        ids.add(batch)
    return ids.outputs(np.concatenate(parts["gaze"]),
                       np.concatenate(parts["features"]) if features else None)


class _Ids:
    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {"rec": [], "frame": [], "target": []}

    def add(self, batch: Mapping[str, torch.Tensor]) -> None:
        self.parts["rec"].append(batch["rec_num"].numpy())
        self.parts["frame"].append(batch["frame_index"].numpy())
        self.parts["target"].append(batch["gaze_cm"].float().numpy())

    def outputs(self, gaze: np.ndarray, features: np.ndarray | None) -> ModelOutputs:
        p = {k: np.concatenate(v) for k, v in self.parts.items()}
        return ModelOutputs(p["rec"].astype(np.int64), p["frame"].astype(np.int64),
                            p["target"].astype(np.float64), gaze.astype(np.float64),
                            None if features is None else features.astype(np.float64))
