"""Per-person calibration: ``python -m tinytracker.calibrate ckpt_path=... points=9 out_dir=...``.

Per subject of ``split``: ``points`` calibration frames (dots closest to the 13-point pattern),
a ``kind`` correction fitted on them, the error on the subject's other frames before and after.
``onnx_path=`` runs an exported file (the INT8 one included) in ONNX Runtime instead, or, with
``ckpt_path``, next to the checkpoint on the same frames. ``calibration_set=`` fits on captured
recordings instead (see :mod:`tinytracker.calibrate.calibration_set`).

Writes into ``out_dir``: ``calibration.json``, ``calibration_curve.png`` (error against points
for every kind) and ``corrections.json`` (``corrections_onnx.json`` for the ONNX model with
both), which ``python -m tinytracker.predict calibration=...`` applies.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from tinytracker.assemble import checkpoint_data, spec_data
from tinytracker.atomic import write_text
from tinytracker.calibrate.model_outputs import checkpoint_outputs, onnx_outputs
from tinytracker.calibrate.pattern import check_pattern_points
from tinytracker.calibrate.plot import plot_curves
from tinytracker.calibrate.protocol import (
    HOLDOUTS,
    ModelOutputs,
    calibrate_subjects,
    error_curve,
    summarise,
)
from tinytracker.cli import refuse_overwrite
from tinytracker.config import register_resolvers
from tinytracker.correction.corrections import (
    MIN_POINTS,
    CalibrationError,
    FitOptions,
    check_kind,
    check_points,
)
from tinytracker.correction.saved import save_corrections
from tinytracker.data.processed import check_split
from tinytracker.models.checkpoint import CheckpointError, module_from_checkpoint
from tinytracker.onnx_runner import OnnxRunner
from tinytracker.quant.checkpoints import is_quantized_net

log = logging.getLogger(__name__)
register_resolvers()

# what calibrate writes into out_dir; an out_dir holding any of them needs overwrite=true
OUTPUTS = ("calibration.json", "calibration_curve.png", "corrections.json",
           "corrections_onnx.json", "calibration_set_processed")


@dataclass
class Model:
    label: str  # "pytorch" or "onnx"
    path: str
    type: str  # "checkpoint" or "onnx"
    outputs: ModelOutputs
    quantized: bool | None = None


def validate(cfg: DictConfig) -> FitOptions:
    """Check the configuration before any model runs; errors name the key."""
    if not cfg.ckpt_path and not cfg.onnx_path:
        raise CalibrationError("give the model: ckpt_path=<file.ckpt> and/or onnx_path=<.onnx>")
    check_split(cfg.split, CalibrationError)
    if cfg.holdout not in HOLDOUTS:
        raise CalibrationError(f"holdout must be one of {HOLDOUTS}, got {cfg.holdout!r}")
    check_points(cfg.kind, cfg.points)
    check_pattern_points(cfg.points)
    for kind in cfg.curve_kinds:
        check_kind(kind, "curve_kinds")
    for points in cfg.curve_points:
        check_pattern_points(points, "curve_points")
    return FitOptions(float(cfg.affine.prior_points), float(cfg.ridge.alpha), float(cfg.svr.C),
                      float(cfg.svr.epsilon_cm))


def load_models(cfg: DictConfig, data_cfg: DictConfig, split: str,
                features: bool) -> list[Model]:
    """Run the configured model(s) over ``split``; both see the same frames in the same order."""
    models = []
    if cfg.ckpt_path:
        module = module_from_checkpoint(cfg.ckpt_path)
        _, loader = checkpoint_data(data_cfg.copy(), module, split)
        models.append(Model("pytorch", str(cfg.ckpt_path), "checkpoint",
                            checkpoint_outputs(module, loader, features),
                            is_quantized_net(module.net)))
    if cfg.onnx_path:
        runner = OnnxRunner(cfg.onnx_path, cfg.ort_optimization)
        _, loader = spec_data(data_cfg.copy(), runner.spec.record(), runner.spec.inputs, split)
        models.append(Model("onnx", str(cfg.onnx_path), "onnx",
                            onnx_outputs(runner, loader, features), runner.quantized))
    first = models[0].outputs
    for other in models[1:]:
        if not ((other.outputs.rec == first.rec).all() and
                (other.outputs.frame == first.frame).all()):
            raise CalibrationError("ckpt_path and onnx_path were run on different frames; they "
                                   "must take the same inputs to be compared")
    return models


def model_section(model: Model, cfg: DictConfig, options: FitOptions,
                  out_dir: Path, name: str) -> dict[str, Any]:
    """Protocol at ``points`` with ``kind``, the curve, and the corrections saved as ``name``."""
    outputs = model.outputs
    results = calibrate_subjects(outputs, cfg.kind, cfg.points, options, cfg.holdout)
    save_corrections(
        out_dir / name, {r.rec: r.correction for r in results}, model.path, model.type,
        cfg.kind, cfg.points,
        extra={r.rec: {"calibration_frames": [int(f) for f in outputs.frame[r.calibration_rows]]}
               for r in results})
    return {
        "model": {"path": model.path, "type": model.type, "quantized": model.quantized,
                  "features": outputs.features is not None},
        "error_cm_all_frames": outputs.error_cm(),
        **summarise(results, outputs),
        "curve": error_curve(outputs, list(cfg.curve_kinds), list(cfg.curve_points), options,
                             cfg.holdout),
        "corrections": str(out_dir / name),
    }


def calibrate(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    options = validate(cfg)
    refuse_overwrite(out_dir, OUTPUTS, bool(cfg.get("overwrite", False)))
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.calibration_set:
        from tinytracker.calibrate.calibration_set import calibrate_set

        return calibrate_set(cfg, out_dir, options)
    features = any(k in ("ridge", "svr") for k in [cfg.kind, *cfg.curve_kinds])
    models = load_models(cfg, cfg.data, cfg.split, features)
    # the first model's corrections are corrections.json; the compared ONNX file's get a suffix
    names = ["corrections.json", "corrections_onnx.json"]
    sections = {m.label: model_section(m, cfg, options, out_dir, name)
                for m, name in zip(models, names, strict=False)}
    result: dict[str, Any] = {"kind": cfg.kind, "points": cfg.points, "split": cfg.split,
                              "holdout": cfg.holdout,
                              "data/name": cfg.data.name,
                              "min_points": dict(MIN_POINTS),
                              **sections[models[0].label]}
    if len(models) == 2:
        result["onnx"] = sections["onnx"]
        result["comparison"] = compare(sections["pytorch"], sections["onnx"])
    result["plot"] = str(plot_curves({m: s["curve"] for m, s in sections.items()},
                                     out_dir / "calibration_curve.png",
                                     f"Per-person calibration ({cfg.split} subjects)"))
    path = out_dir / "calibration.json"
    write_text(path, json.dumps(result, indent=1) + "\n")
    log_summary(result, sections)
    log.info("written %s", path)
    return result


def compare(torch_section: dict[str, Any], onnx_section: dict[str, Any]) -> dict[str, Any]:
    """Improvement of the PyTorch model and of the ONNX one, on the same frames and dots."""
    a, b = torch_section["improvement_cm"], onnx_section["improvement_cm"]
    return {"improvement_cm_pytorch": a, "improvement_cm_onnx": b,
            "improvement_diff_cm": abs(a - b),
            "error_cm_after_diff": abs(torch_section["error_cm_after"]
                                       - onnx_section["error_cm_after"])}


def log_summary(result: dict[str, Any], sections: dict[str, dict[str, Any]]) -> None:
    for label, s in sections.items():
        log.info("%s: %d subjects, kind=%s points=%d: error %.3f -> %.3f cm (-%.1f%%)", label,
                 s["subjects"], result["kind"], result["points"], s["error_cm_before"],
                 s["error_cm_after"], 100 * s["improvement_fraction"])
        curve = s["curve"]
        for i, points in enumerate(curve["points"]):
            after = {k: v[i] for k, v in curve["error_cm_after"].items() if v[i] is not None}
            log.info("  points=%2d before %s | %s", points, _cm(curve["error_cm_before"][i]),
                     "  ".join(f"{k} {_cm(v)}" for k, v in after.items()))
    if "comparison" in result:
        log.info("improvement pytorch %.4f cm, onnx %.4f cm (difference %.4f cm)",
                 *(result["comparison"][k] for k in ("improvement_cm_pytorch",
                                                     "improvement_cm_onnx",
                                                     "improvement_diff_cm")))


def _cm(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="calibrate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        calibrate(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (CalibrationError, CheckpointError, FileNotFoundError, FileExistsError,
            ValueError) as err:
        log.error("%s", err)
        raise SystemExit(f"calibrate failed: {err}") from err


if __name__ == "__main__":
    main()
