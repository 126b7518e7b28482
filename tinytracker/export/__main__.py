"""Export a checkpoint: ``python -m tinytracker.export ckpt_path=... format=onnx out_dir=...``.

``format=onnx`` writes into ``out_dir`` the exported model (``model.onnx``) and
``export.json``: its size, and the error of the exported file run by ONNX Runtime on ``split``
next to the PyTorch model's, with their element-wise agreement (``parity/...``).
``format=imx500`` quantizes the sensor graph of a one-input net with Sony's MCT and converts
it with ``imxconv-pt`` (:mod:`tinytracker.export.imx500`): ``imx500/packerOut.zip``, the memory
report, ``imx500/deploy.json`` (and the host head ``imx500/head.npz`` when the net has one),
and in ``export.json`` the chip memory figures, the test error of the IMX500-bound model and
that of the emulated camera (``imx500/emulated_test_error_cm``). A two-input checkpoint is
refused, naming the deployable ``model.position`` choices.
``format=tflite`` writes ``model.tflite``, a full-integer LiteRT file of the whole net (int8
inputs and output, the input spec in its metadata) made by ``litert-torch`` in its own
environment (:mod:`tinytracker.export.tflite`), and in ``export.json`` its test error in LiteRT
and in TFLite Micro next to the checkpoint's, and the TFLite Micro arena it needs.
The data is built from the data config (``data=...``) with the checkpoint's input
preprocessing (:func:`tinytracker.assemble.checkpoint_data`), as ``tinytracker.evaluate``
does. When the checkpoint's W&B run is known, the numbers and the exported file are added to
it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from lightning.pytorch import seed_everything
from omegaconf import DictConfig

from tinytracker.assemble import checkpoint_data
from tinytracker.atomic import write_text
from tinytracker.cli import refuse_overwrite
from tinytracker.config import register_resolvers
from tinytracker.data.processed import check_split
from tinytracker.export.errors import ExportError
from tinytracker.export.imx500 import check_fit, export_imx500
from tinytracker.export.onnx import export_onnx, predict_both
from tinytracker.export.tflite import export_tflite
from tinytracker.models.checkpoint import CheckpointError, load_checkpoint, module_from_checkpoint
from tinytracker.models.module import GazeModule
from tinytracker.onnx_runner import FEATURES_NAME, ORT_OPTIMIZATION, OUTPUT_NAME, ort_session
from tinytracker.quant.checkpoints import is_quantized_checkpoint, is_quantized_net, require_kind
from tinytracker.tracking import WandbRunRef, checkpoint_wandb_run, log_to_wandb_run

log = logging.getLogger(__name__)
register_resolvers()

# what an export writes into out_dir; an out_dir holding any of them needs overwrite=true
OUTPUTS = ("export.json", "model.onnx", "imx500", "model.tflite")

def export(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Export as configured; returns what is written to ``export.json``."""
    refuse_overwrite(out_dir, OUTPUTS, bool(cfg.get("overwrite", False)))
    check_split(cfg.split, ExportError)
    if cfg.ort_optimization not in ORT_OPTIMIZATION:
        raise ExportError(f"ort_optimization must be one of {ORT_OPTIMIZATION}, "
                          f"got {cfg.ort_optimization!r}")
    if cfg.format not in FORMATS:
        raise ExportError(f"format must be one of {tuple(FORMATS)}, got {cfg.format!r}")
    ckpt = load_checkpoint(cfg.ckpt_path)
    if cfg.get("quantized") is not None:
        require_kind(ckpt, cfg.ckpt_path, "ckpt_path", quantized=bool(cfg.quantized),
                     hint="Quantized checkpoints come from +experiment=qat runs; pass "
                          "quantized=null to export whatever the checkpoint holds.")
    module = module_from_checkpoint(cfg.ckpt_path)
    # the calibration images are the first of the shuffled training loader: the same images,
    # and so the same file, for the same seed
    seed_everything(int(cfg.seed), verbose=False)
    result: dict[str, Any] = {
        "format": cfg.format,
        "checkpoint": str(cfg.ckpt_path),
        "quantized": is_quantized_checkpoint(ckpt),
        **FORMATS[cfg.format](cfg, module, out_dir),
    }
    path = out_dir / "export.json"
    write_text(path, json.dumps(result, indent=2, sort_keys=True) + "\n")
    log.info("export written to %s", path)
    for key in sorted(result):
        log.info("%s: %s", key, result[key])
    check_fit(result)
    _check_parity(cfg, result)
    log_to_checkpoint_run(cfg, result, out_dir)
    return result


def export_onnx_format(cfg: DictConfig, module: GazeModule, out_dir: Path) -> dict[str, Any]:
    spec = dict(module.hparams.get("input_spec") or {})
    features = bool(cfg.get("features", False))
    path = export_onnx(module.net, out_dir / "model.onnx", spec, opset=cfg.opset,
                       features=features, activation_type=cfg.get("activation_type", "uint8"))
    result: dict[str, Any] = {
        "path": str(path),
        "size_bytes": path.stat().st_size,
        "opset": cfg.opset,
        "inputs": list(module.input_keys),
        "outputs": [OUTPUT_NAME, FEATURES_NAME] if features else [OUTPUT_NAME],
    }
    if is_quantized_net(module.net):
        result["activation_type"] = cfg.get("activation_type", "uint8")
    if cfg.evaluate:
        result.update(evaluate_onnx(cfg, module, path))
    return result


FORMATS: dict[str, Callable[[DictConfig, GazeModule, Path], dict[str, Any]]] = {
    "onnx": export_onnx_format,
    "imx500": export_imx500,
    "tflite": export_tflite,
}


def wandb_run(cfg: DictConfig) -> WandbRunRef | None:
    """The W&B run to add the export to: ``wandb.run_id`` (``auto``: the checkpoint's run)."""
    run_id = cfg.wandb.get("run_id")
    if not run_id:
        return None
    if run_id == "auto":
        return checkpoint_wandb_run(cfg.ckpt_path)
    return WandbRunRef(str(run_id), str(cfg.wandb.project), cfg.wandb.get("entity"))


def log_to_checkpoint_run(cfg: DictConfig, result: dict[str, Any], out_dir: Path) -> None:
    """Numbers of ``export.json`` into the run's summary (prefixed ``export/<format>/``), the
    exported file (``packerOut.zip``, ``model.onnx``) as an artifact of that run."""
    ref = wandb_run(cfg)
    if ref is None:
        return
    summary = {f"export/{cfg.format}/{k}": v for k, v in result.items()
               if isinstance(v, (int, float, bool)) and v is not None}
    run_dir = log_to_wandb_run(ref, out_dir, str(cfg.wandb.mode), summary,
                               [Path(result["path"])], f"{cfg.format}-{ref.run_id}")
    log.info("export logged to W&B run %s (%s)", ref.run_id, run_dir)


def evaluate_onnx(cfg: DictConfig, module: GazeModule, path: Path) -> dict[str, Any]:
    """Error of the ONNX file (ONNX Runtime) and of the PyTorch model on ``cfg.split``."""
    _, loader = checkpoint_data(cfg.data, module, cfg.split)
    pred = predict_both(module.net, ort_session(path, cfg.ort_optimization), loader)
    split = cfg.split
    result = _compare(pred, split, getattr(module.net, "output_step", None))
    result["parity/ort_optimization"] = cfg.ort_optimization
    if cfg.ort_optimization != "all":
        # Also what ONNX Runtime's default session does: fused integer kernels, which on x86
        # CPUs without VNNI may saturate int16 pair sums (u8 x s8), so small differences.
        pred = predict_both(module.net, ort_session(path, "all"), loader)
        extra = _compare(pred, split, result["parity/output_step_cm"])
        result.update({f"ort_all/{k}": extra[k] for k in
                       (f"{split}/error_cm", "parity/max_abs_diff_cm", "parity/outputs_differing")})
    return result


def _compare(pred: dict[str, np.ndarray], split: str, step: float | None) -> dict[str, Any]:
    err_onnx = np.linalg.norm(pred["onnx"] - pred["target"], axis=1).mean()
    err_torch = np.linalg.norm(pred["torch"] - pred["target"], axis=1).mean()
    diff = np.abs(pred["onnx"] - pred["torch"])
    return {
        f"{split}/error_cm": float(err_onnx),
        f"{split}/error_cm_pytorch": float(err_torch),
        f"{split}/frames": int(len(pred["target"])),
        "parity/error_diff_cm": float(abs(err_onnx - err_torch)),
        "parity/max_abs_diff_cm": float(diff.max()),
        "parity/mean_abs_diff_cm": float(diff.mean()),
        "parity/output_step_cm": step,
        "parity/outputs_differing": int((diff > 1e-6).sum()),
    }


def _check_parity(cfg: DictConfig, result: dict[str, Any]) -> None:
    if not cfg.parity_check or "parity/max_abs_diff_cm" not in result:
        return
    step = result["parity/output_step_cm"]
    # one output step, plus float rounding of the dequantized value itself
    tol = step * (1 + 1e-4) if step else cfg.parity_float_tol_cm
    problems = []
    if result["parity/max_abs_diff_cm"] > tol:
        problems.append(f"outputs differ by up to {result['parity/max_abs_diff_cm']:.5f} cm "
                        f"(allowed {tol:.5f} cm)")
    if result["parity/error_diff_cm"] > cfg.parity_error_tol_cm:
        problems.append(f"errors differ by {result['parity/error_diff_cm']:.5f} cm "
                        f"(allowed {cfg.parity_error_tol_cm} cm)")
    if problems:
        raise ExportError("ONNX Runtime does not reproduce the PyTorch model: "
                          + "; ".join(problems) + " (numbers in export.json)")


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        export(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (CheckpointError, ExportError, FileExistsError) as err:
        log.error("%s", err)
        raise SystemExit(f"export failed: {err}") from err


if __name__ == "__main__":
    main()
