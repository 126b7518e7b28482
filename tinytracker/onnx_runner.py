"""An exported tinytracker ONNX file in ONNX Runtime: its input spec, inputs and outputs.

The one reader of exported files, for ``predict`` (one sample at a time) and ``calibrate``
(batches). It needs only ONNX Runtime: neither the exporter (:mod:`tinytracker.export.onnx`)
nor the quantization tools it uses (Brevitas, MCT) are imported to run a file, which the
import contracts in ``pyproject.toml`` keep so. The names the exporter writes are defined here
and imported by it, so writer and reader cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tinytracker.data.spec import SampleSpec

OUTPUT_NAME = "gaze_cm"  # (batch, 2) gaze in cm
FEATURES_NAME = "features"  # (batch, D) penultimate features, with ``export features=true``
QUANTIZATION_KEY = "tinytracker.quantization"  # JSON: {"format": "QCDQ" | "float32", ...}
ORT_OPTIMIZATION = ("all", "basic", "none")


def ort_session(path: str | Path, optimization: str = "all"):
    """An ONNX Runtime CPU session; ``optimization``: "all" (ONNX Runtime's default: fused
    integer kernels), "basic" (the QDQ graph as written, float kernels) or "none"."""
    import onnxruntime as ort

    levels = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }
    if optimization not in levels:
        raise ValueError(f"optimization must be one of {ORT_OPTIMIZATION}, got {optimization!r}")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRunner:
    """An exported file: ``spec`` (its inputs, in order, and preprocessing), ``has_features``,
    ``quantization`` (what the exporter recorded), and gaze for one sample or a batch."""

    def __init__(self, path: str | Path, optimization: str = "all") -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist (expected a file written by "
                                    "python -m tinytracker.export format=onnx)")
        try:
            self.session = ort_session(self.path, optimization)
        except Exception as err:  # ONNX Runtime's own types: InvalidProtobuf, InvalidGraph...
            raise ValueError(f"ONNX file {self.path} cannot be loaded by ONNX Runtime (expected "
                             f"a file written by python -m tinytracker.export): "
                             f"{str(err).splitlines()[0]}") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        self.spec = SampleSpec.from_onnx_metadata(
            tuple(i.name for i in self.session.get_inputs()), meta, f"ONNX file {self.path}")
        outputs = [o.name for o in self.session.get_outputs()]
        if OUTPUT_NAME not in outputs:
            raise ValueError(f"ONNX file {self.path} has no '{OUTPUT_NAME}' output "
                             f"(outputs: {outputs}); it was not written by tinytracker")
        self.has_features = FEATURES_NAME in outputs
        self.quantization: dict[str, Any] = json.loads(meta.get(QUANTIZATION_KEY, "{}"))

    @property
    def quantized(self) -> bool:
        return self.quantization.get("format") == "QCDQ"

    def run(self, batch: Mapping[str, Any], features: bool = False
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Gaze ``(N, 2)`` cm, and the features ``(N, D)`` when asked for, of a batch of the
        model's input fields (numpy arrays or CPU tensors)."""
        feed = {k: np.ascontiguousarray(np.asarray(batch[k]), dtype=np.float32)
                for k in self.spec.inputs}
        names = [OUTPUT_NAME, FEATURES_NAME] if features else [OUTPUT_NAME]
        result = self.session.run(names, feed)
        return result[0], (result[1] if features else None)

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """One sample's fields (no batch dimension) -> gaze ``(2,)`` in cm."""
        gaze, _ = self.run({k: np.asarray(inputs[k])[None] for k in self.spec.inputs})
        return np.asarray(gaze[0], dtype=np.float64)

    def with_features(self, inputs: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Gaze ``(2,)`` cm and the ``features`` output ``(D,)`` (``export features=true``)."""
        gaze, feats = self.run({k: np.asarray(inputs[k])[None] for k in self.spec.inputs},
                               features=True)
        assert feats is not None
        return np.asarray(gaze[0], dtype=np.float64), np.asarray(feats[0], dtype=np.float64)
