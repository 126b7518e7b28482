"""Run a model over a split: a checkpoint in PyTorch, or an exported ONNX file in ONNX Runtime.

Either way the result is :class:`~tinytracker.calibrate.protocol.ModelOutputs`: gaze, labels,
ids, and the penultimate features where the model gives them (float and Brevitas nets through
``forward_with_features``; an ONNX file when exported with ``features=true``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from tinytracker.calibrate.protocol import ModelOutputs
from tinytracker.export.onnx import FEATURES_NAME, OUTPUT_NAME, ort_session, read_metadata
from tinytracker.models.module import GazeModule

ONNX_SPEC_KEY = "tinytracker.input_spec"


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


class OnnxModel:
    """An exported tinytracker ONNX file: its inputs, preprocessing and optional features."""

    def __init__(self, path: str | Path, optimization: str = "basic") -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"onnx_path={self.path} does not exist (expected a file "
                                    "written by python -m tinytracker.export format=onnx)")
        meta = read_metadata(self.path)
        if ONNX_SPEC_KEY not in meta:
            raise ValueError(f"onnx_path={self.path} has no '{ONNX_SPEC_KEY}' metadata: it was "
                             "not exported by tinytracker, so its preprocessing is unknown")
        self.input_spec: dict[str, Any] = json.loads(meta[ONNX_SPEC_KEY])
        self.session = ort_session(self.path, optimization)
        self.input_keys = tuple(i.name for i in self.session.get_inputs())
        outputs = [o.name for o in self.session.get_outputs()]
        if OUTPUT_NAME not in outputs:
            raise ValueError(f"onnx_path={self.path} has no '{OUTPUT_NAME}' output "
                             f"(outputs: {outputs})")
        self.has_features = FEATURES_NAME in outputs
        self.quantization = json.loads(meta.get("tinytracker.quantization", "{}"))

    def outputs(self, loader: Iterable[Mapping[str, torch.Tensor]],
                features: bool = True) -> ModelOutputs:
        features = features and self.has_features
        names = [OUTPUT_NAME, FEATURES_NAME] if features else [OUTPUT_NAME]
        parts: dict[str, list[np.ndarray]] = {"gaze": [], "features": []}
        ids = _Ids()
        for batch in tqdm(loader, desc="ONNX Runtime", unit="batch"):
            feed = {k: batch[k].float().numpy() for k in self.input_keys}
            result = self.session.run(names, feed)
            parts["gaze"].append(result[0])
            if features:
                parts["features"].append(result[1])
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
