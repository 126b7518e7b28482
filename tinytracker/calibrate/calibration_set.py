"""Fit corrections on captured calibration recordings: ``calibrate ... calibration_set=<dir>``.

A calibration set is one or more recordings (one per person) in the raw GazeCapture layout,
as :mod:`tinytracker.calibrate.capture` writes them, or already processed. Every frame of a
recording calibrates that person (``points`` is not used: the capture chose the dots), whatever
split its ``info.json`` names. Reported per person: the error before and after on the
calibration frames themselves (in-sample), and leave-one-dot-out (each dot's frames corrected
by a fit on the other dots), the honest estimate of what the correction does on new frames.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from tinytracker.atomic import write_text
from tinytracker.calibrate.model_outputs import checkpoint_outputs, onnx_outputs
from tinytracker.calibrate.protocol import ModelOutputs
from tinytracker.correction.corrections import (
    MIN_POINTS,
    CalibrationError,
    FitOptions,
    check_points,
    fit,
)
from tinytracker.correction.saved import save_corrections
from tinytracker.data.dataset import GazeDataset
from tinytracker.data.processed import DataFormatError, load_index
from tinytracker.data.spec import SampleSpec
from tinytracker.models.checkpoint import module_from_checkpoint
from tinytracker.onnx_runner import OnnxRunner

log = logging.getLogger(__name__)

def processed_set(root: Path, out_dir: Path) -> Path:
    """``root`` itself when processed; else prepared once into ``out_dir``."""
    if (root / "metadata.mat").is_file():
        return root
    if not root.is_dir() or not any(root.glob("*/frames.json")):
        raise DataFormatError(f"calibration_set={root} holds neither metadata.mat nor raw "
                              "recordings (NNNNN/frames.json, ...), as written by python -m "
                              "tinytracker.calibrate.capture")
    from tinytracker.data.prepare import prepare

    target = out_dir / "calibration_set_processed"
    prepare(root, target)
    return target


def _loader(processed: Path, spec: SampleSpec, batch_size: int) -> DataLoader:
    dataset = GazeDataset(load_index(processed), spec)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False)


def set_outputs(cfg: DictConfig, processed: Path, features: bool) -> tuple[ModelOutputs, str,
                                                                            str]:
    """The model's outputs on every frame of the set, its path and type."""
    if cfg.ckpt_path and cfg.onnx_path:
        raise CalibrationError("calibration_set= fits one model: give ckpt_path or onnx_path")
    batch = int(cfg.data.eval_batch_size)
    if cfg.ckpt_path:
        module = module_from_checkpoint(cfg.ckpt_path)
        spec = SampleSpec.from_record(tuple(module.input_keys),
                                      module.hparams.get("input_spec"),
                                      f"ckpt_path={cfg.ckpt_path}")
        loader = _loader(processed, spec, batch)
        return checkpoint_outputs(module, loader, features), str(cfg.ckpt_path), "checkpoint"
    runner = OnnxRunner(cfg.onnx_path, cfg.ort_optimization)
    loader = _loader(processed, runner.spec, batch)
    return onnx_outputs(runner, loader, features), str(cfg.onnx_path), "onnx"


def leave_one_dot_out(out: ModelOutputs, rows: np.ndarray, kind: str,
                      options: FitOptions) -> np.ndarray:
    """Per-frame error of each dot's frames under a fit on the other dots (NaN: no fit)."""
    dots = np.unique(out.target_cm[rows].round(4), axis=0, return_inverse=True)[1].reshape(-1)
    errors = np.full(len(rows), np.nan)
    feats = out.features
    for dot in np.unique(dots):
        train, test = rows[dots != dot], rows[dots == dot]
        if len(train) < MIN_POINTS[kind]:
            continue
        try:
            corr = fit(kind, out.gaze_cm[train], out.target_cm[train],
                       None if feats is None else feats[train], options)
        except CalibrationError:
            continue
        corrected = corr.apply(out.gaze_cm[test], None if feats is None else feats[test])
        errors[dots == dot] = np.linalg.norm(corrected - out.target_cm[test], axis=1)
    return errors


def calibrate_set(cfg: DictConfig, out_dir: Path, options: FitOptions) -> dict[str, Any]:
    processed = processed_set(Path(cfg.calibration_set).expanduser(), out_dir)
    out, model_path, model_type = set_outputs(cfg, processed, cfg.kind in ("ridge", "svr"))
    corrections, per_subject = {}, {}
    for rec in out.subjects():
        rows = out.rows_of(rec)
        try:
            check_points(cfg.kind, len(rows))
            corr = fit(cfg.kind, out.gaze_cm[rows], out.target_cm[rows],
                       None if out.features is None else out.features[rows], options)
        except CalibrationError as err:
            raise CalibrationError(f"calibration_set recording {rec:05d} ({len(rows)} frames): "
                                   f"{err}") from err
        corrections[rec] = corr
        feats = None if out.features is None else out.features[rows]
        after = np.linalg.norm(corr.apply(out.gaze_cm[rows], feats) - out.target_cm[rows], axis=1)
        lodo = leave_one_dot_out(out, rows, cfg.kind, options)
        per_subject[f"{rec:05d}"] = {
            "frames": int(len(rows)),
            "dots": int(len(np.unique(out.target_cm[rows].round(4), axis=0))),
            "error_cm_before": float(np.linalg.norm(out.gaze_cm[rows] - out.target_cm[rows],
                                                    axis=1).mean()),
            "error_cm_after_in_sample": float(after.mean()),
            "error_cm_after_leave_one_dot_out": (float(np.nanmean(lodo))
                                                 if np.isfinite(lodo).any() else None),
        }
    path = save_corrections(out_dir / "corrections.json", corrections, model_path, model_type,
                            cfg.kind, None)
    result = {"mode": "calibration_set", "calibration_set": str(cfg.calibration_set),
              "kind": cfg.kind, "model": {"path": model_path, "type": model_type},
              "subjects": len(corrections), "per_subject": per_subject,
              "corrections": str(path)}
    write_text(out_dir / "calibration.json", json.dumps(result, indent=1) + "\n")
    for rec, row in per_subject.items():
        log.info("recording %s: %d frames, %d dots: error %.3f cm -> %.3f in sample, %s "
                 "leave-one-dot-out", rec, row["frames"], row["dots"], row["error_cm_before"],
                 row["error_cm_after_in_sample"], row["error_cm_after_leave_one_dot_out"])
    log.info("corrections written to %s", path)
    return result
