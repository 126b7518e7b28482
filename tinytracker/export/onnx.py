"""ONNX export of a trained gaze model, and running it with ONNX Runtime.

* A Brevitas-quantized net (:class:`~tinytracker.quant.brevitas.BrevitasNet`) is exported as
  QCDQ (``QuantizeLinear -> Clip -> DequantizeLinear`` around float ops, int8 weight
  initializers), which ONNX Runtime runs with integer kernels and converters take as the
  quantization spec. A float net is exported as plain float32 ONNX.
* Inputs are named as the batch fields (``face``, optionally ``grid_embedding``...), the output
  ``gaze_cm``; the batch dimension is dynamic. With ``features=True`` a second output,
  ``features``, holds the penultimate features (for per-person calibration on them).
* The preprocessing the model expects (the checkpoint's ``input_spec``) is written into the
  model's ``metadata_props``, so the file is usable without the checkpoint.
* Activations of a quantized net are written as uint8 by default (``activation_type``), the
  same values on a zero point moved by 128 (:mod:`tinytracker.export.qdq`): ONNX Runtime then
  fuses every layer into an integer kernel on any CPU.

Brevitas is imported only to export a quantized net: reading an ONNX file or running it with
ONNX Runtime (``read_metadata``, ``ort_session``) loads neither Brevitas nor MCT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

# the reader of exported files owns the names both sides use, and the session
from tinytracker.data.spec import ONNX_METADATA_KEY
from tinytracker.export.qdq import ACTIVATION_TYPES, activations_as_uint8
from tinytracker.onnx_runner import FEATURES_NAME, OUTPUT_NAME
from tinytracker.quant.checkpoints import is_quantized_net

DEFAULT_OPSET = 13  # QuantizeLinear/DequantizeLinear with per-channel axis need opset >= 13

PREPROCESSING = (
    "face: square face crop resized to face_size x face_size with the filter interpolation, "
    "RGB (grey: ITU-R BT.601 luma, as OpenCV COLOR_RGB2GRAY), NCHW float32, value = "
    "(pixel / 255 - mean) / std. grid_embedding: (2, face_size, face_size), channel 0 a "
    "linspace along x and channel 1 along y over the face-grid box mapped to [-1, 1] in the "
    "convention grid_convention (tinytracker.data.geometry.grid_embedding); mean, std, "
    "interpolation and grid_convention: tinytracker.input_spec."
)
OUTPUT_DOC = "gaze_cm: (batch, 2) gaze point (XCam, YCam) in cm, GazeCapture camera coordinates"
FEATURES_DOC = ("features: (batch, D) the penultimate features (after the hidden fully connected "
                "layer and its ReLU), for per-person calibration (tinytracker.calibrate)")


class _WithFeatures(nn.Module):
    """Exports ``net.forward_with_features``: outputs ``gaze_cm`` and ``features``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not hasattr(net, "forward_with_features"):
            raise ValueError(f"features=true: {type(net).__name__} does not expose its "
                             "penultimate features (forward_with_features)")
        self.net = net

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.forward_with_features(*inputs)


def export_onnx(net: nn.Module, path: str | Path, input_spec: Mapping[str, Any] | None = None,
                opset: int = DEFAULT_OPSET, features: bool = False,
                activation_type: str = "uint8") -> Path:
    """Write ``net`` (float or Brevitas-quantized) to ``path`` as ONNX; returns the path.

    ``features``: also output the penultimate features (``features``, ``(batch, D)``).
    ``activation_type`` (quantized nets): ``uint8`` writes every activation as uint8 (exactly
    the same values; ONNX Runtime fuses all layers), ``as_trained`` keeps Brevitas' int8 for
    signed tensors."""
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation_type must be one of {ACTIVATION_TYPES}, "
                         f"got {activation_type!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = tuple(net.input_keys)
    shapes = net.input_shapes
    args = tuple(torch.zeros(1, *shapes[k]) for k in keys)
    outputs = [OUTPUT_NAME, FEATURES_NAME] if features else [OUTPUT_NAME]
    kwargs: dict[str, Any] = {
        "input_names": list(keys),
        "output_names": outputs,
        "dynamic_axes": {k: {0: "batch"} for k in (*keys, *outputs)},
        "opset_version": opset,
        # Brevitas' QCDQ handlers are TorchScript symbolic functions: the legacy exporter
        "dynamo": False,
    }
    exported = _WithFeatures(net) if features else net
    was_training = net.training
    net.eval()
    try:
        if is_quantized_net(net):
            from brevitas.export import export_onnx_qcdq

            export_onnx_qcdq(exported, args=args, export_path=str(path),
                             keep_initializers_as_inputs=False, **kwargs)
        else:
            with torch.no_grad():
                torch.onnx.export(exported, args, str(path), **kwargs)
    finally:
        net.train(was_training)
    model = onnx.load(str(path))
    if is_quantized_net(net) and activation_type == "uint8":
        activations_as_uint8(model)
    compact_names(model)
    meta = model_metadata(net, input_spec or {}, activation_type)
    if features:
        meta["tinytracker.features"] = FEATURES_DOC
    set_metadata(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def model_metadata(net: nn.Module, input_spec: Mapping[str, Any],
                   activation_type: str = "uint8") -> dict[str, str]:
    """``metadata_props`` of the exported file: inputs, preprocessing, output, quantization."""
    keys = tuple(net.input_keys)
    meta = {
        "tinytracker.inputs": ",".join(keys),
        "tinytracker.output": OUTPUT_DOC,
        "tinytracker.preprocessing": PREPROCESSING,
        ONNX_METADATA_KEY: json.dumps(dict(input_spec), sort_keys=True),
    }
    for key in ("face_size", "grey", "mean", "std", "grid_embedding"):
        if key in input_spec:
            meta[key] = json.dumps(input_spec[key])
    if any(k.startswith("eye_") for k in keys) and "eye_size" in input_spec:
        meta["eye_size"] = json.dumps(input_spec["eye_size"])
    if is_quantized_net(net):
        meta["tinytracker.quantization"] = json.dumps(
            {"format": "QCDQ", "tool": "brevitas", "activation_type": activation_type,
             **net.scheme.as_dict()}, sort_keys=True)
        meta["tinytracker.output_step_cm"] = json.dumps(net.output_step)
    else:
        meta["tinytracker.quantization"] = json.dumps({"format": "float32"})
    return meta


def set_metadata(model: onnx.ModelProto, meta: Mapping[str, str]) -> None:
    model.producer_name = "tinytracker"
    model.doc_string = "Gaze estimation. " + OUTPUT_DOC
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)


def compact_names(model: onnx.ModelProto) -> None:
    """Short tensor names and no node names, graph inputs and outputs kept.

    The TorchScript exporter names every tensor after its module path
    (``/net/backbone/features/features.12/.../QuantizeLinear_output_0``): about 100 kB of a
    0.5 MB int8 TinyTracker, more than all its biases and scales together.
    """
    graph = model.graph
    keep = {v.name for v in graph.input} | {v.name for v in graph.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if not name or name in keep:
            return name
        return names.setdefault(name, f"t{len(names)}")

    for init in graph.initializer:
        init.name = short(init.name)
    for node in graph.node:
        node.name = ""
        node.doc_string = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    for info in graph.value_info:
        info.name = short(info.name)


@torch.no_grad()
def predict_both(net: nn.Module, session, batches: Iterable[Mapping[str, torch.Tensor]]
                 ) -> dict[str, np.ndarray]:
    """PyTorch and ONNX Runtime predictions (and targets) on the same batches, in order."""
    keys = tuple(net.input_keys)
    net.eval()
    out: dict[str, list[np.ndarray]] = {"torch": [], "onnx": [], "target": []}
    for batch in batches:
        inputs = [batch[k].float() for k in keys]
        out["torch"].append(net(*inputs).numpy())
        feed = {k: x.numpy() for k, x in zip(keys, inputs, strict=True)}
        out["onnx"].append(session.run([OUTPUT_NAME], feed)[0])
        out["target"].append(batch["gaze_cm"].float().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}
