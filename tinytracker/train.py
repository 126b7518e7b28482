"""Train and test a gaze model: ``python -m tinytracker.train [group=option] [key=value ...]``.

The story: validate config -> seed -> datamodule -> model -> callbacks and loggers -> trainer
-> fit -> test the best checkpoint -> ``metrics.json`` + W&B summary -> a printed summary ->
return the optimised metric (for Hydra sweepers).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinytracker.assemble import build_module
from tinytracker.atomic import WriteError
from tinytracker.cli import experiment_alias
from tinytracker.config import (
    ConfigError,
    check_input_shapes,
    check_launch,
    run_tags,
    validate_train_config,
)
from tinytracker.data.dataset import input_shapes
from tinytracker.locations import source_checkout
from tinytracker.models.checkpoint import CheckpointError, load_checkpoint
from tinytracker.models.footprint import footprint
from tinytracker.tracking import (
    format_run_summary,
    git_state,
    log_checkpoint_artifact,
    log_summary,
    resume_wandb_run,
    start_wandb,
    wandb_run_locations,
    write_metrics,
)

log = logging.getLogger(__name__)


def _instantiate_group(group: DictConfig | None) -> list:
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def output_dir(cfg: DictConfig) -> Path:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # not under Hydra (called from Python)
        return Path(cfg.paths.output_dir)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test as configured; returns the metrics written to ``metrics.json``."""
    validate_train_config(cfg)
    if cfg.get("ckpt_path"):
        # refuse unsafe or foreign checkpoints, and float/quantized mix-ups, before any work
        _check_resume_checkpoint(cfg, load_checkpoint(cfg.ckpt_path))
    L.seed_everything(cfg.seed, workers=True)
    t0 = time.perf_counter()

    datamodule = instantiate(cfg.data, _convert_="all")
    module = build_module(cfg)
    datamodule.set_inputs(module.input_keys)
    shapes = input_shapes(datamodule.spec)
    check_input_shapes(module.net, shapes)

    fine_tune, quant_metrics, trainer_overrides = True, {}, {}
    if cfg.get("quant"):
        # QAT/PTQ (+experiment=qat): the float model is trained (or loaded) and tested as the
        # reference, then replaced by its calibrated quantized wrapper (tinytracker.quant).
        from tinytracker.quant.training import quantized_start

        start = quantized_start(cfg, module, datamodule, output_dir(cfg))
        module, fine_tune, quant_metrics = start.module, start.fine_tune, start.metrics
        trainer_overrides = start.trainer_overrides  # e.g. max_epochs: quant.epochs

    callbacks = _instantiate_group(cfg.get("callbacks"))
    loggers = _instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     **trainer_overrides)
    check_launch(trainer)
    git = git_state(source_checkout())
    resolved = OmegaConf.to_container(cfg, resolve=True)
    resume_wandb_run(loggers, cfg.get("ckpt_path"), output_dir(cfg))  # same dir: same run
    start_wandb(loggers)
    for lg in loggers:  # W&B config: git.commit, git.dirty
        lg.log_hyperparams({**resolved, "git": {k.split("/")[1]: v for k, v in git.items()}})

    if fine_tune:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_s = time.perf_counter() - t0
    # the last epoch's training error (testing resets the trainer's metrics)
    train_error = trainer.callback_metrics.get("train/error_cm") if fine_tune else None

    ckpt_cb = trainer.checkpoint_callback
    best = getattr(ckpt_cb, "best_model_path", "") or ""
    if not fine_tune:  # PTQ: nothing to fit; validate and keep the calibrated weights
        trainer.validate(module, datamodule=datamodule)
        best = str(output_dir(cfg) / "checkpoints" / "calibrated.ckpt")
        trainer.save_checkpoint(best, weights_only=True)
    metrics: dict[str, Any] = {
        "model/name": cfg.model.name,
        "data/name": cfg.data.name,
        "checkpoint": best or None,
        "checkpoint_last": getattr(ckpt_cb, "last_model_path", "") or None,
        "train/epochs": trainer.current_epoch,
        "train/fit_s": fit_s,
        "tags": run_tags(cfg.get("tags"), cfg.get("debug_run")),
        "debug_run": cfg.get("debug_run"),
        **git,
    }
    # every run has the key (PTQ fits nothing: null), so runs of one sweep share their keys
    metrics["train/error_cm"] = None if train_error is None else float(train_error)
    if ckpt_cb is not None and getattr(ckpt_cb, "best_model_score", None) is not None:
        metrics["val/error_cm"] = float(ckpt_cb.best_model_score)
    elif "val/error_cm" in trainer.callback_metrics:
        metrics["val/error_cm"] = float(trainer.callback_metrics["val/error_cm"])

    if cfg.get("test"):
        ckpt = best if best and not trainer.fast_dev_run else None
        t_test = time.perf_counter()
        results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
        metrics["time/test_s"] = time.perf_counter() - t_test
        metrics["test/error_cm"] = float(results[0]["test/error_cm"])
        metrics["test/frames"] = int(results[0]["test/frames"])
        metrics["baseline/mean_predictor_error_cm"] = datamodule.mean_predictor_error_cm("test")
        metrics["baseline/irreducible_error_cm"] = datamodule.irreducible_error_cm()

    # A quantized net declares the bit width of each weight kernel (kernel_bits).
    fp = footprint(module.net, {k: shapes[k] for k in module.input_keys},
                   weight_bits=getattr(module.net, "kernel_bits", 8))
    metrics.update({
        "model/params": fp.params,
        "model/macs": fp.macs,
        "model/macs_pointwise": fp.macs_pointwise,
        "model/size_fp32_bytes": fp.size_fp32_bytes,
        "model/size_int8_bytes": fp.size_int8_bytes,
        "data/train_frames": len(datamodule.datasets["train"]),
        "data/test_frames": len(datamodule.datasets["test"]),
        "time/total_s": time.perf_counter() - t0,
        # wall time by stage: data generation and preparation (0 when cached) happen inside fit
        "time/generate_s": datamodule.timings_s["generate"],
        "time/prepare_s": datamodule.timings_s["prepare"],
        "time/train_s": fit_s - sum(datamodule.timings_s.values()),
        **quant_metrics,
    })

    if trainer.is_global_zero:
        path = write_metrics(output_dir(cfg) / "metrics.json", metrics)
        log.info("metrics written to %s", path)
        log_summary(loggers, metrics)
        log_checkpoint_artifact(loggers, best, cfg.model.name)
        log.info("%s", format_run_summary(metrics, path, wandb_run_locations(loggers)))
    for lg in loggers:
        lg.finalize("success")
    _finish_wandb(loggers)
    return metrics


def _check_resume_checkpoint(cfg: DictConfig, ckpt: dict[str, Any]) -> None:
    from tinytracker.quant.checkpoints import require_kind

    quantized = bool(cfg.get("quant"))
    hint = ("Resume a QAT run from one of its own checkpoints; start QAT from a float model "
            "with quant.float_ckpt=..." if quantized else
            "A float run resumes float checkpoints; resume a QAT run with +experiment=qat.")
    require_kind(ckpt, cfg.ckpt_path, "ckpt_path", quantized=quantized, hint=hint)


def _finish_wandb(loggers: list) -> None:
    from tinytracker.tracking import wandb_loggers

    for lg in wandb_loggers(loggers):
        lg.experiment.finish()


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="train")
def main(cfg: DictConfig) -> float | tuple[float, ...] | None:
    try:
        metrics = train(cfg)
    except ConfigError as err:
        log.error("invalid config: %s", err)
        raise SystemExit(f"invalid config: {err}") from err
    except CheckpointError as err:
        log.error("unusable checkpoint: %s", err)
        raise SystemExit(f"unusable checkpoint: {err}") from err
    except WriteError as err:  # a full or read-only disk: the file and the bytes, no traceback
        log.error("%s", err)
        raise SystemExit(f"train failed: {err}") from err
    return optimized_value(metrics, cfg.get("optimized_metric"))


def optimized_value(metrics: dict[str, Any],
                    names: str | list[str] | None) -> float | tuple[float, ...] | None:
    """What a Hydra sweeper minimises: one metric, or a tuple for a multi-objective search
    (``optimized_metric: [test/error_cm, model/size_int8_bytes]``); ``None`` if not measured."""
    if not names:
        return None
    keys = [names] if isinstance(names, str) else list(names)
    missing = [k for k in keys if metrics.get(k) is None]
    if missing:
        log.warning("optimized_metric %s was not measured in this run (test=false?); "
                    "metrics.json has %s", missing, sorted(metrics))
        return None
    values = tuple(float(metrics[k]) for k in keys)
    return values[0] if isinstance(names, str) else values


if __name__ == "__main__":
    sys.argv = experiment_alias(sys.argv)
    main()
