"""Run a trained model on one sample: a tinytracker checkpoint (PyTorch) or an exported ONNX.

Both give the model's input fields and the preprocessing it was trained with, as a
:class:`~tinytracker.data.dataset.SampleSpec`: a checkpoint from its ``input_spec``
hyper-parameters, an ONNX file from the ``metadata_props`` that ``tinytracker.export`` writes
(``tinytracker.input_spec``, a JSON object, or the single keys ``face_size``, ``eye_size``,
``grey``, ``mean``, ``std``, each JSON-encoded) and its graph inputs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from tinytracker.calibrate.corrections import CalibrationError, Correction
from tinytracker.data.dataset import SampleSpec

ONNX_SPEC_KEY = "tinytracker.input_spec"
GAZE_OUTPUT, FEATURES_OUTPUT = "gaze_cm", "features"  # names tinytracker.export writes
ONNX_SPEC_FIELDS = ("face_size", "eye_size", "grey", "mean", "std")


class Runner(Protocol):
    spec: SampleSpec  # spec.inputs: the model's input fields, in order

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One sample's fields (no batch dimension) -> gaze ``(2,)`` in cm."""
        ...


def _spec(inputs: tuple[str, ...], values: Mapping[str, Any], source: str) -> SampleSpec:
    missing = [k for k in ("face_size", "grey", "mean", "std") if values.get(k) is None]
    if missing:
        raise ValueError(f"{source} does not record the preprocessing {missing} "
                         "(input_spec); it was not written by tinytracker")
    return SampleSpec(inputs=inputs, face_size=int(values["face_size"]),
                      eye_size=int(values.get("eye_size") or 224), grey=bool(values["grey"]),
                      mean=float(values["mean"]), std=float(values["std"]))


class TorchRunner:
    def __init__(self, path: str | Path) -> None:
        from tinytracker.models.checkpoint import module_from_checkpoint

        self.module = module_from_checkpoint(path).eval()
        self.spec = _spec(tuple(self.module.input_keys),
                          self.module.hparams.get("input_spec") or {}, f"checkpoint {path}")

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


class OnnxRunner:
    def __init__(self, path: str | Path) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_SPEC_KEY in meta:
            values = json.loads(meta[ONNX_SPEC_KEY])
        else:
            values = {k: json.loads(meta[k]) for k in ONNX_SPEC_FIELDS if k in meta}
        self.spec = _spec(tuple(i.name for i in self.session.get_inputs()), values,
                          f"ONNX file {path}")
        self.has_features = FEATURES_OUTPUT in [o.name for o in self.session.get_outputs()]

    def _feed(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(inputs[k], dtype=np.float32)[None]
                for k in self.spec.inputs}

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        gaze = self.session.run([GAZE_OUTPUT], self._feed(inputs))[0]
        return np.asarray(gaze[0], dtype=np.float64)

    def with_features(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Gaze ``(2,)`` cm and the ``features`` output ``(D,)`` (``export features=true``)."""
        gaze, feats = self.session.run([GAZE_OUTPUT, FEATURES_OUTPUT], self._feed(inputs))
        return np.asarray(gaze[0], dtype=np.float64), np.asarray(feats[0], dtype=np.float64)


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
