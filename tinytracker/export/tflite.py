"""``format=tflite``: a full-integer LiteRT file for CPUs and microcontrollers, and its numbers.

1. the float net of the checkpoint (a QAT checkpoint's float weights, batch norm folded as
   QAT had it, and its float host head) is taken whole: for ``model.position=late`` the file
   computes the sensor part *and* the head, so it takes ``face`` and ``face_box`` (a CPU or a
   microcontroller has no sensor/host split; the head arranged for int8 by
   :mod:`tinytracker.export.litert_graph`); nets that stack ``face`` and ``grid_embedding``
   take them stacked on channels, as one input ``face_and_grid_embedding``, as the authors'
   files do. Image inputs are NHWC, as LiteRT, cameras and the authors' files;
2. ``torch.export`` writes that program, and the LiteRT environment (``.venv-litert``,
   :mod:`tinytracker.export.litert_env`) quantizes it with ``litert-torch``'s PT2E flow
   (int8 per-channel symmetric weights, int8 activations) calibrated on
   ``tflite.calibration_images`` training images from the run's own DataModule (no
   augmentation), and converts it: int8 inputs and an int8 output whose scale and zero point
   are in the file (``cm = scale * (q - zero_point)``), the input spec in its metadata;
3. TFLite Micro's interpreter runs the file: every operator supported (or the missing ones
   named with their layers), the tensor arena it needs, and its outputs;
4. evaluated on ``split``: the file in LiteRT and in TFLite Micro next to the checkpoint in
   PyTorch, and their element-wise agreement in cm.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from tinytracker.assemble import checkpoint_data
from tinytracker.data.spec import ONNX_METADATA_KEY
from tinytracker.export.errors import ExportError
from tinytracker.export.imx500 import calibration_batches
from tinytracker.export.litert_env import find_litert_python, run_worker
from tinytracker.export.litert_graph import LiteRTGraph, file_arrays, file_keys
from tinytracker.export.onnx import PREPROCESSING
from tinytracker.models.module import GazeModule
from tinytracker.onnx_runner import OUTPUT_NAME
from tinytracker.quant.checkpoints import is_quantized_net

log = logging.getLogger(__name__)

FILE_NAME = "model.tflite"
LAYOUT_DOC = ("image inputs (face, frame) are NHWC; face_and_grid_embedding: the face's "
              "channels, then the 2 grid-embedding channels, NHWC; every input is int8: "
              "q = clip(round(value / scale) + zero_point, -128, 127) with the input tensor's "
              "quantization parameters, value as in tinytracker.preprocessing")
OUTPUT_DOC = ("gaze_cm: (1, 2) int8, the gaze point (XCam, YCam) in cm = scale * (q - "
              "zero_point) with the output tensor's quantization parameters, GazeCapture "
              "camera coordinates")
QAT_CARRIED = ("the QAT-trained float weights (batch norm folded as QAT had it) and the float "
               "host head (model.position=late)")
QAT_RECALIBRATED = ("every scale: per-channel weight scales from the carried weights "
                    "(max |w| / 127) and activation ranges from the calibration images. "
                    "litert-torch's PT2E flow sets scales with its own observers, so the "
                    "scales Brevitas trained are not carried over")


def nhwc(x: torch.Tensor) -> np.ndarray:
    """A batch of one input as the file takes it (images NHWC), float32."""
    x = x.float()
    return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).contiguous().numpy()


def calibration_arrays(float_net: nn.Module, batches: list[tuple[torch.Tensor, ...]]
                       ) -> dict[str, np.ndarray]:
    """Calibration batches (the net's inputs in ``input_keys`` order) as the file's inputs:
    NHWC, batch first, by :func:`file_keys`."""
    keys = tuple(float_net.input_keys)
    return file_arrays(float_net, {k: np.concatenate([nhwc(b[i]) for b in batches])
                                   for i, k in enumerate(keys)})


def export_tflite(cfg: DictConfig, module: GazeModule, out_dir: Path) -> dict[str, Any]:
    """Convert, run in TFLite Micro and evaluate; the ``export.json`` entries."""
    from tinytracker.quant.float_weights import float_net_of

    settings = cfg.tflite
    images = int(settings.calibration_images)
    if images < 1:
        raise ExportError(f"tflite.calibration_images must be >= 1, got {images}")
    python = find_litert_python(settings.get("python"))  # before any work: says how to make it
    float_net = float_net_of(module.net, module.hparams["net"]).eval()
    keys = file_keys(float_net)
    calibration = calibration_batches(cfg, module, images, tuple(float_net.input_keys))
    arrays = calibration_arrays(float_net, calibration)
    path = out_dir / FILE_NAME
    timeout = float(settings.timeout_s)
    spec = dict(module.hparams.get("input_spec") or {})
    quantized_ckpt = is_quantized_net(module.net)
    evaluate = bool(cfg.evaluate)
    converted = convert_net(float_net, arrays, path, python, timeout,
                            tflite_metadata(keys, spec, quantized_ckpt))
    if evaluate:
        frames = collect_split(cfg, module, float_net)
        frames["inputs"] = file_arrays(float_net, frames["inputs"])
    else:
        frames = {"inputs": {k: arrays[k][:1] for k in keys}}
    feeds = quantize_inputs(frames["inputs"], converted["inputs"], keys)
    with tempfile.TemporaryDirectory(prefix="tinytracker-tflite-") as tmp_name:
        tmp = Path(tmp_name)
        np.savez(tmp / "micro_in.npz", **{f"input_{i}": f for i, f in enumerate(feeds)})
        micro = run_worker(python, "micro", timeout, model=path, inputs=tmp / "micro_in.npz",
                           outputs=tmp / "micro_out.npz")
        micro_out = np.load(tmp / "micro_out.npz")["output_0"]
    result = conversion_entries(path, converted, micro, keys, quantized_ckpt)
    if evaluate:
        out_q = converted["outputs"][0]
        litert = run_litert(path, feeds)
        reference = run_litert(path, feeds, reference=True)
        result.update(evaluation_entries(cfg.split, frames, dequantize(litert, out_q),
                                         dequantize(micro_out, out_q), float(out_q["scale"])))
        steps = np.abs(micro_out.astype(np.int32) - reference.astype(np.int32))
        result["tflite/micro/max_steps_from_litert_reference"] = int(steps.max())
    return result


def convert_net(float_net: nn.Module, arrays: dict[str, np.ndarray], path: Path,
                python: Path, timeout_s: float, metadata: dict[str, str]) -> dict[str, Any]:
    """``float_net`` to a full-integer ``.tflite`` at ``path``: ``torch.export`` of its
    :class:`LiteRTGraph` at batch 1, then PT2E calibration on ``arrays`` (each input, NHWC,
    batch first, by :func:`file_keys`) and conversion in the LiteRT environment; the
    converter's report."""
    keys = file_keys(float_net)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinytracker-tflite-") as tmp_name:
        tmp = Path(tmp_name)
        program = torch.export.export(LiteRTGraph(float_net.eval()), (),
                                      {k: torch.from_numpy(arrays[k][:1]) for k in keys})
        torch.export.save(program, tmp / "model.pt2")
        np.savez(tmp / "calibration.npz", **arrays)
        (tmp / "metadata.json").write_text(json.dumps(metadata))
        return run_worker(python, "convert", timeout_s, program=tmp / "model.pt2",
                          calibration=tmp / "calibration.npz", metadata=tmp / "metadata.json",
                          out=path)


def tflite_metadata(keys: tuple[str, ...], input_spec: dict[str, Any],
                    quantized_ckpt: bool) -> dict[str, str]:
    """The metadata entries written into the file (name -> JSON or text)."""
    meta = {
        "tinytracker.inputs": ",".join(keys),
        "tinytracker.layout": LAYOUT_DOC,
        "tinytracker.output": OUTPUT_DOC,
        "tinytracker.preprocessing": PREPROCESSING,
        ONNX_METADATA_KEY: json.dumps(input_spec, sort_keys=True),
        "tinytracker.quantization": json.dumps(
            {"format": "int8", "tool": "litert-torch PT2E",
             "weights": "int8 per-channel symmetric", "activations": "int8",
             "from": "QAT checkpoint's float weights" if quantized_ckpt else "float checkpoint"},
            sort_keys=True),
    }
    return meta


@torch.no_grad()
def collect_split(cfg: DictConfig, module: GazeModule, float_net: nn.Module) -> dict[str, Any]:
    """Inputs (NHWC float), targets, and the checkpoint's and its float weights' PyTorch
    outputs on ``cfg.split``."""
    _, loader = checkpoint_data(cfg.data, module, cfg.split)
    keys = tuple(module.input_keys)
    module.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    out: dict[str, list[np.ndarray]] = {"checkpoint": [], "float": [], "target": []}
    for batch in tqdm(loader, desc=f"PyTorch on {cfg.split}", unit="batch"):
        inputs = [batch[k].float() for k in keys]
        for k, x in zip(keys, inputs, strict=True):
            parts[k].append(nhwc(x))
        out["checkpoint"].append(module.net(*inputs).float().numpy())
        out["float"].append(float_net(*inputs).float().numpy())
        out["target"].append(batch["gaze_cm"].float().numpy())
    return {"inputs": {k: np.concatenate(v) for k, v in parts.items()},
            **{k: np.concatenate(v) for k, v in out.items()}}


def quantize_inputs(inputs: dict[str, np.ndarray], details: list[dict[str, Any]],
                    keys: tuple[str, ...]) -> list[np.ndarray]:
    """The inputs in the file's order and dtype (``q = round(x / scale) + zero_point``)."""
    feeds = []
    for detail in details:
        key = detail["key"]
        if key not in keys:
            raise ExportError(f"the .tflite input {detail['name']!r} is none of {keys}")
        info = np.iinfo(detail["dtype"])
        q = np.round(inputs[key] / detail["scale"]) + detail["zero_point"]
        feeds.append(np.clip(q, info.min, info.max).astype(detail["dtype"]))
    return feeds


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    return (q.astype(np.float32) - detail["zero_point"]) * np.float32(detail["scale"])


def run_litert(path: Path, feeds: list[np.ndarray], reference: bool = False) -> np.ndarray:
    """The file's raw output on every frame, one at a time, in LiteRT on one thread: as
    users run it (XNNPACK), or with LiteRT's reference kernels (``reference``), whose
    rounding TFLite Micro's kernels follow."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    interpreter = Interpreter(model_path=str(path), num_threads=1,
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    output = interpreter.get_output_details()[0]
    out = []
    desc = "LiteRT reference kernels" if reference else "LiteRT"
    for i in tqdm(range(len(feeds[0])), desc=desc, unit="frame"):
        for detail, feed in zip(inputs, feeds, strict=True):
            interpreter.set_tensor(detail["index"], feed[i:i + 1])
        interpreter.invoke()
        out.append(interpreter.get_tensor(output["index"]).copy())
    return np.concatenate(out)


def conversion_entries(path: Path, converted: dict[str, Any], micro: dict[str, Any],
                       keys: tuple[str, ...], quantized_ckpt: bool) -> dict[str, Any]:
    out_q = converted["outputs"][0]
    result: dict[str, Any] = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "inputs": list(keys),
        "outputs": [OUTPUT_NAME],
        "tflite/inputs": converted["inputs"],
        "tflite/output_dtype": out_q["dtype"],
        "tflite/output_scale_cm": float(out_q["scale"]),
        "tflite/output_zero_point": int(out_q["zero_point"]),
        "tflite/operators": converted["operators"],
        "tflite/float_tensors": converted["float_tensors"],
        "tflite/calibration_images": converted["calibration_images"],
        "tflite/quantizer": converted["quantizer"],
        "tflite/convert_s": converted["convert_s"],
        "tflite/metadata": "in the file (model metadata entries tinytracker.*)",
        "tflite/micro/all_ops_supported": micro["all_ops_supported"],
        "tflite/micro/arena_bytes": micro["arena_bytes"],
        "tflite/micro/arena_checked": micro["arena_checked"],
        "tflite/micro/host_ms_per_frame": micro["ms_per_frame"],
        **{f"tflite/{k}": v for k, v in converted.items() if k.startswith("version/")},
    }
    if quantized_ckpt:
        result["tflite/qat_carried"] = QAT_CARRIED
        result["tflite/qat_recalibrated"] = QAT_RECALIBRATED
    return result


def evaluation_entries(split: str, frames: dict[str, Any], litert: np.ndarray,
                       micro: np.ndarray, step_cm: float) -> dict[str, Any]:
    target = frames["target"]

    def error(pred: np.ndarray) -> float:
        return float(np.linalg.norm(pred - target, axis=1).mean())

    err, err_ckpt = error(litert), error(frames["checkpoint"])
    diff = np.abs(litert - frames["checkpoint"])
    micro_diff = np.abs(micro - litert)
    return {
        f"{split}/error_cm": err,
        f"{split}/error_cm_checkpoint": err_ckpt,
        f"{split}/error_cm_float_weights": error(frames["float"]),
        f"{split}/error_cm_increase": err - err_ckpt,
        f"{split}/frames": int(len(target)),
        "tflite/max_abs_diff_to_checkpoint_cm": float(diff.max()),
        "tflite/mean_abs_diff_to_checkpoint_cm": float(diff.mean()),
        f"tflite/micro/{split}/error_cm": error(micro),
        "tflite/micro/max_abs_diff_to_litert_cm": float(micro_diff.max()),
        "tflite/micro/outputs_differing_from_litert": int((micro_diff > step_cm / 2).sum()),
    }
