"""``format=imx500``: MCT quantization for the IMX500, Sony's converter, the camera's files,
and the numbers.

1. the float net of the checkpoint (a QAT checkpoint's float weights, which QAT made robust
   to 8-bit rounding) is split into its sensor graph and host head
   (:mod:`tinytracker.export.sensor_part`); a net whose sensor graph takes two tensors (the
   grid-embedding design) is refused: the sensor fills one;
2. MCT quantizes the sensor graph for the IMX500 target (:mod:`tinytracker.quant.mct`),
   calibrated on ``imx500.calibration_images`` training images from the run's own DataModule
   (no augmentation): 8-bit weights, or with ``imx500.weights_memory_kb`` /
   ``imx500.weights_memory_fraction`` 8, 4 or 2 bits per layer as MCT's mixed-precision
   search picks them under that weights-memory budget; ``imx500.gptq=true`` adds GPTQ;
3. MCT's ONNX goes through ``imxconv-pt`` (:mod:`tinytracker.export.imxconv`), which writes
   ``packerOut.zip`` (for ``imx500-package`` on the Raspberry Pi), the memory report and
   ``dnnParams.xml``; ``deploy.json`` and the head file (if any) go next to them;
4. evaluated on ``split``: the MCT-quantized model (what the camera computes, up to the
   converter's integer arithmetic) and the checkpoint on the training pipeline's inputs, and
   the emulated camera (:mod:`tinytracker.export.emulation`: full frames, ROI, ISP, int8
   input, MCT's ONNX in ONNX Runtime, the head) as the Pi program runs it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from tinytracker.assemble import checkpoint_data
from tinytracker.export.emulation import emulated_entries, mct_onnx_session, session_graph
from tinytracker.export.errors import ExportError
from tinytracker.export.imxconv import (
    ConversionReport,
    find_converter,
    run_converter,
    too_big_message,
)
from tinytracker.export.sensor_part import SensorPart, sensor_part, write_camera_files
from tinytracker.models.module import GazeModule
from tinytracker.quant.mct import WeightsMemory

log = logging.getLogger(__name__)

ONNX_NAME = "model_imx500.onnx"
CONVERTER_DIR = "imx500"
KB = 1024  # imx500.weights_memory_kb: 1 KB = 1024 B, as the converter's memory report


def export_imx500(cfg: DictConfig, module: GazeModule, out_dir: Path) -> dict[str, Any]:
    """Quantize, convert, write the camera's files and evaluate; the ``export.json`` entries."""
    from tinytracker.quant.float_weights import float_net_of
    from tinytracker.quant.mct import export_mct_onnx

    settings = cfg.imx500
    check_settings(settings)
    float_net = float_net_of(module.net, module.hparams["net"])
    part = sensor_part(float_net, str(cfg.ckpt_path))  # a two-input net stops here
    converter = find_converter(settings.converter)  # before any work: a missing env says how
    net = _mct_ready(part.net, part.input_keys)
    calibration = calibration_batches(cfg, module, int(settings.calibration_images),
                                      part.input_keys)

    t0 = time.perf_counter()
    quantized, precision = _quantize(net, calibration, settings)
    mct_s = time.perf_counter() - t0
    onnx_path = export_mct_onnx(quantized, out_dir / ONNX_NAME, calibration[0])
    report = run_converter(converter, onnx_path, out_dir / CONVERTER_DIR,
                           timeout_s=float(settings.timeout_s))
    manifest_path, manifest, head = write_camera_files(
        part, report.dnn_params, dict(module.hparams.get("input_spec") or {}),
        str(cfg.ckpt_path), out_dir / CONVERTER_DIR)
    result: dict[str, Any] = {
        "path": str(report.packer_zip),
        "onnx_path": str(onnx_path),
        "inputs": list(part.input_keys),
        "outputs": [manifest.output.kind],
        "imx500/tpc_version": str(settings.tpc_version),
        "imx500/calibration_images": sum(len(b[0]) for b in calibration),
        "imx500/mct_s": mct_s,
        **precision,
        "imx500/deploy_json": str(manifest_path),
        "imx500/head": None if head is None else str(manifest.head_path(manifest_path)),
        "imx500/output_step": manifest.output.scale,
        **report_entries(report),
    }
    if cfg.evaluate and report.fit_in_chip:
        session = mct_onnx_session(onnx_path)
        result.update(evaluate_imx500(cfg, module, quantized, float_net, part, session))
        datamodule, _ = checkpoint_data(cfg.data, module, cfg.split)
        result.update(emulated_entries(datamodule, cfg.split, manifest, head,
                                       session_graph(session)))
        emulated = result.get(f"imx500/emulated_{cfg.split}_error_cm")
        if emulated is not None:
            result["imx500/emulated_minus_float_cm"] = (
                emulated - result[f"{cfg.split}/error_cm_float_weights"])
    return result


def check_settings(settings: DictConfig) -> None:
    """The ``imx500`` keys that need no model, checked before any work."""
    if int(settings.calibration_images) < 1:
        raise ExportError(f"imx500.calibration_images must be >= 1, "
                          f"got {settings.calibration_images}")
    kb, fraction = settings.get("weights_memory_kb"), settings.get("weights_memory_fraction")
    if kb is not None and fraction is not None:
        raise ExportError(f"imx500.weights_memory_kb={kb} and imx500.weights_memory_fraction="
                          f"{fraction} both set a mixed-precision budget; set one of them "
                          "(the other null)")
    if kb is not None and not float(kb) > 0:
        raise ExportError(f"imx500.weights_memory_kb must be > 0 (KB of weights, 1 KB = 1024 B), "
                          f"got {kb}")
    if fraction is not None and not 0 < float(fraction) <= 1:
        raise ExportError(f"imx500.weights_memory_fraction must be in (0, 1] (a share of the "
                          f"8-bit weights memory), got {fraction}")
    epochs = settings.get("gptq_epochs", 0)
    if settings.get("gptq", False) and int(epochs) < 1:
        raise ExportError(f"imx500.gptq_epochs must be >= 1 with imx500.gptq=true, got {epochs}")


def _budget_key(settings: DictConfig) -> str | None:
    """The budget as given, ``imx500.<key>=<value>`` (:func:`check_settings` allows one key)."""
    for key in ("weights_memory_kb", "weights_memory_fraction"):
        if settings.get(key) is not None:
            return f"imx500.{key}={settings.get(key)}"
    return None


def budget_bytes(settings: DictConfig, memory: WeightsMemory) -> float | None:
    """The mixed-precision budget in bytes of MCT's weights memory (None: all 8-bit); one at or
    above the 8-bit figure needs no search. Below MCT's minimum, an error naming the key."""
    key = _budget_key(settings)
    if key is None:
        return None
    kb = settings.get("weights_memory_kb")
    budget = (float(kb) * KB if kb is not None
              else float(settings.weights_memory_fraction) * memory.eight_bit_bytes)
    if budget < memory.min_bytes:
        raise ExportError(
            f"{key} asks MCT for {budget:,.0f} B of weights, but this network needs at least "
            f"{memory.min_bytes:,.0f} B (every layer at its lowest bit width; "
            f"{memory.eight_bit_bytes:,.0f} B at 8 bits). Raise the budget to >= "
            f"{memory.min_bytes / KB:.1f} KB (fraction >= "
            f"{memory.min_bytes / memory.eight_bit_bytes:.3f}), or make the network smaller")
    if budget >= memory.eight_bit_bytes:
        log.info("%s is at least the 8-bit weights memory (%.0f B): every layer at 8 bits",
                 key, memory.eight_bit_bytes)
        return None
    return budget


def _quantize(net: nn.Module, calibration: list[tuple[torch.Tensor, ...]],
              settings: DictConfig) -> tuple[nn.Module, dict[str, Any]]:
    """MCT as ``settings`` say (precision, GPTQ); the model and its ``export.json`` entries."""
    from tinytracker.quant.mct import (
        BudgetUnreachable,
        MctOptions,
        quantize_for_imx500,
        weight_bits,
        weights_by_bits,
        weights_memory,
    )

    tpc = str(settings.tpc_version)
    memory = weights_memory(net, calibration, tpc)
    budget = budget_bytes(settings, memory)
    gptq = bool(settings.get("gptq", False))
    options = MctOptions(weights_memory_bytes=budget,
                         gptq_epochs=int(settings.gptq_epochs) if gptq else 0,
                         gptq_hessian=gptq and bool(settings.get("gptq_hessian", False)))
    try:
        quantized = quantize_for_imx500(net, calibration, tpc, options)
    except BudgetUnreachable as err:
        raise ExportError(f"{_budget_key(settings)}: MCT cannot meet the budget of "
                          f"{budget:,.0f} B: {err}") from err
    bits = weight_bits(quantized)
    by_bits = weights_by_bits(quantized)
    # MCT's weights memory of the chosen assignment: kernel elements x bits / 8
    chosen = sum(bits_ * count for bits_, count in by_bits.items()) / 8
    return quantized, {
        "imx500/weight_bits": bits,
        "imx500/weights_by_bits": {str(b): n for b, n in by_bits.items()},
        "imx500/weights_memory_budget_bytes": None if budget is None else round(budget),
        "imx500/mct_weights_memory_bytes": round(chosen),
        "imx500/mct_weights_memory_8bit_bytes": round(memory.eight_bit_bytes),
        "imx500/mct_weights_memory_min_bytes": round(memory.min_bytes),
        "imx500/gptq": gptq,
        "imx500/gptq_epochs": options.gptq_epochs,
        "imx500/gptq_hessian": options.gptq_hessian,
    }


def _mct_ready(sensor: nn.Module, keys: tuple[str, ...]) -> nn.Module:
    """The sensor graph as MCT can trace it: a TinyTracker / TinyTrackerS (or the
    ``sensor_net()`` of one, which computes it through its ``owner``) through the
    straight-line wrapper of :mod:`tinytracker.quant.mct`; another one-input module as it is."""
    from tinytracker.models.tinytracker import TinyTracker, TinyTrackerS
    from tinytracker.quant.mct import traceable

    owner = getattr(sensor, "owner", sensor)
    if not isinstance(owner, (TinyTracker, TinyTrackerS)):
        return sensor.eval()
    try:
        net = traceable(owner)
    except ValueError as err:
        raise ExportError(str(err)) from err
    if net.input_keys != keys:
        raise ExportError(f"the sensor graph takes {net.input_keys}, expected {keys}")
    return net


def report_entries(report: ConversionReport) -> dict[str, Any]:
    return {
        "imx500/fit_in_chip": report.fit_in_chip,
        "imx500/memory_usage_bytes": report.memory_usage_bytes,
        "imx500/model_memory_bytes": report.model_memory_bytes,
        "imx500/runtime_memory_bytes": report.runtime_memory_bytes,
        "imx500/chip_memory_bytes": report.chip_memory_bytes,
        "imx500/converter_version": report.converter_version,
        "imx500/conversion_s": report.conversion_s,
        "imx500/packer_zip": str(report.packer_zip),
        "imx500/packer_zip_size_bytes": report.packer_zip.stat().st_size,
        "imx500/memory_report": str(report.memory_report),
        "imx500/dnn_params": str(report.dnn_params),
    }


def calibration_batches(cfg: DictConfig, module: GazeModule, images: int,
                        keys: tuple[str, ...]) -> list[tuple[torch.Tensor, ...]]:
    """The first ``images`` training images (the sensor graph's inputs ``keys``), as the
    checkpoint was fed."""
    _, loader = checkpoint_data(cfg.data, module, "train")
    batches: list[tuple[torch.Tensor, ...]] = []
    taken = 0
    for batch in loader:
        take = min(images - taken, len(batch["gaze_cm"]))
        batches.append(tuple(batch[k][:take].float() for k in keys))
        taken += take
        if taken >= images:
            break
    if taken < images:
        log.warning("imx500.calibration_images=%d but the training split has %d frames; "
                    "calibrating on all of them", images, taken)
    return batches


@torch.no_grad()
def evaluate_imx500(cfg: DictConfig, module: GazeModule, quantized: nn.Module,
                    float_net: nn.Module, part: SensorPart, session) -> dict[str, Any]:
    """Errors on ``split`` of the IMX500-bound (MCT) model, of the checkpoint, and of the
    float weights MCT started from (the checkpoint itself unless it is a QAT checkpoint),
    on the training pipeline's inputs; and how closely MCT's ONNX in ONNX Runtime (the graph
    the converter took) reproduces the MCT model in PyTorch."""
    _, loader = checkpoint_data(cfg.data, module, cfg.split)
    keys = tuple(module.input_keys)
    preds: dict[str, list[np.ndarray]] = {"imx500": [], "checkpoint": [], "float": [],
                                          "target": [], "ort_diff": []}
    module.eval()
    float_net.eval()
    head = part.host_head.eval() if part.host_head is not None else None
    graph = session_graph(session)
    for batch in tqdm(loader, desc="evaluating IMX500 model", unit="batch"):
        inputs = [batch[k].float() for k in keys]
        sensor_inputs = [batch[k].float() for k in part.input_keys]
        sensor_out = quantized(*sensor_inputs).float()
        ort_out = graph(sensor_inputs[0].numpy())
        preds["ort_diff"].append(np.abs(ort_out - sensor_out.numpy()).reshape(-1))
        if head is not None:  # the host head on the sensor's features and the face box
            sensor_out = head(torch.cat([sensor_out, batch["face_box"].float()], dim=1))
        preds["imx500"].append(sensor_out.numpy())
        preds["checkpoint"].append(module.net(*inputs).float().numpy())
        preds["float"].append(float_net(*inputs).float().numpy())
        preds["target"].append(batch["gaze_cm"].float().numpy())
    out = {k: np.concatenate(v) for k, v in preds.items()}
    split = cfg.split

    def error(key: str) -> float:
        return float(np.linalg.norm(out[key] - out["target"], axis=1).mean())

    err_imx, err_ckpt = error("imx500"), error("checkpoint")
    return {
        f"{split}/error_cm": err_imx,
        f"{split}/error_cm_checkpoint": err_ckpt,
        f"{split}/error_cm_float_weights": error("float"),
        f"{split}/error_cm_increase": err_imx - err_ckpt,
        f"{split}/frames": int(len(out["target"])),
        "imx500/max_abs_diff_to_checkpoint_cm": float(np.abs(out["imx500"]
                                                             - out["checkpoint"]).max()),
        "imx500/ort_max_abs_diff_to_mct": float(out["ort_diff"].max()),
    }


def check_fit(result: dict[str, Any]) -> None:
    """Fail an export whose network does not fit the IMX500's memory (report kept)."""
    if result.get("imx500/fit_in_chip", True):
        return
    memory = {k: result[f"imx500/{k}"] for k in ("memory_usage_bytes", "model_memory_bytes",
                                                 "runtime_memory_bytes", "chip_memory_bytes")}
    raise ExportError(too_big_message(memory, Path(result["imx500/memory_report"])))
