"""Run a trained model on one sample: a tinytracker checkpoint (PyTorch) or an exported ONNX.

Both give the model's input fields and the preprocessing it was trained with, as a
:class:`~tinytracker.data.spec.SampleSpec`: a checkpoint from its ``input_spec``
hyper-parameters, an ONNX file (:class:`~tinytracker.onnx_runner.OnnxRunner`) from the metadata
that ``tinytracker.export`` writes and its graph inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from tinytracker.correction.corrections import CalibrationError, Correction
from tinytracker.data.spec import SampleSpec
from tinytracker.onnx_runner import OnnxRunner


class Runner(Protocol):
    spec: SampleSpec  # spec.inputs: the model's input fields, in order

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One sample's fields (no batch dimension) -> gaze ``(2,)`` in cm."""
        ...


class TorchRunner:
    def __init__(self, path: str | Path) -> None:
        from tinytracker.models.checkpoint import module_from_checkpoint

        self.module = module_from_checkpoint(path).eval()
        self.spec = SampleSpec.from_record(tuple(self.module.input_keys),
                                           self.module.hparams.get("input_spec"),
                                           f"checkpoint {path}")

    @property
    def has_features(self) -> bool:
        return hasattr(self.module.net, "forward_with_features")

    def _batch(self, inputs: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(inputs[k]))[None]
                for k in self.spec.inputs}

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.module(self._batch(inputs))[0].double().numpy()

    @torch.no_grad()
    def with_features(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Gaze ``(2,)`` cm and the penultimate features ``(D,)`` of one sample."""
        gaze, feats = self.module.forward_with_features(self._batch(inputs))
        return gaze[0].double().numpy(), feats[0].double().numpy()


class CalibratedRunner:
    """A runner whose output is corrected by a person's saved calibration."""

    def __init__(self, runner: TorchRunner | OnnxRunner, correction: Correction) -> None:
        if correction.needs_features and not runner.has_features:
            raise CalibrationError(
                f"a kind={correction.kind} calibration needs the model's penultimate features, "
                "which this model does not output (for an ONNX file: export it with "
                "features=true)")
        self.runner, self.correction, self.spec = runner, correction, runner.spec

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if self.correction.needs_features:
            gaze, feats = self.runner.with_features(inputs)
            return self.correction.apply(gaze[None], feats[None])[0]
        return self.correction.apply(self.runner(inputs)[None])[0]


def load_runner(path: str | Path) -> TorchRunner | OnnxRunner:
    """A :class:`TorchRunner` for a checkpoint, an :class:`OnnxRunner` for ``*.onnx``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path} does not exist (expected a tinytracker "
                                "checkpoint or an exported .onnx)")
    return OnnxRunner(path) if path.suffix.lower() == ".onnx" else TorchRunner(path)
