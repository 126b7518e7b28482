"""The quantized start of a QAT or PTQ run (``+experiment=qat``), before ``train.py`` fits.

1. The float model: loaded from ``quant.float_ckpt``, or trained here for
   ``quant.float_epochs`` (default: ``trainer.max_epochs``, i.e. the float run as configured;
   checkpoints in ``<run>/checkpoints/float``).
2. Its test error, ``test/error_cm_float_reference``: what quantization is measured against.
3. Its :class:`~tinytracker.quant.brevitas.BrevitasNet` wrapper, configured by the scheme keys
   of ``quant`` (:class:`~tinytracker.quant.scheme.QuantScheme`), with the float weights (BN
   folded) and activation ranges calibrated on training batches.

``train.py`` then fine-tunes that module for ``quant.epochs`` (``quant.mode=qat``) or only tests it
(``quant.mode=ptq``, the post-training baseline), and writes the metrics returned here with its
own.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from tinytracker.config import ConfigError, build_net
from tinytracker.models.checkpoint import load_checkpoint, module_from_checkpoint
from tinytracker.models.module import GazeModule
from tinytracker.quant.checkpoints import CheckpointKindError, config_differences, require_kind
from tinytracker.quant.scheme import QuantScheme

log = logging.getLogger(__name__)

MODES = ("qat", "ptq")


@dataclass
class QuantStart:
    """The calibrated quantized module, whether (and how long) to fine-tune it, and the
    metrics so far."""

    module: GazeModule
    fine_tune: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    trainer_overrides: dict[str, Any] = field(default_factory=dict)


def validate_quant_config(cfg: DictConfig) -> QuantScheme:
    """Check ``cfg.quant``; raises :class:`ConfigError` naming the ``quant.*`` key."""
    q = cfg.quant
    if q.get("mode") not in MODES:
        raise ConfigError(f"quant.mode must be one of {MODES}, got {q.get('mode')!r}")
    for key in ("float_epochs", "epochs", "calibration_batches"):
        value = q.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"quant.{key} must be a positive integer, got {value!r}")
    try:
        scheme = QuantScheme.from_config(q, prefix="quant")
        if scheme.groups:  # the layer groups must name layers of the float model
            float_net = build_net(OmegaConf.to_container(cfg.model.net, resolve=True))
            try:
                scheme.check_prefixes(name for name, _ in float_net.named_modules())
            except ValueError as err:
                raise ValueError(f"quant.{err}") from err
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err
    return scheme


def quantized_start(cfg: DictConfig, float_module: GazeModule, datamodule: L.LightningDataModule,
                    out_dir: Path) -> QuantStart:
    """Float model (loaded or trained) -> reference test -> calibrated quantized module."""
    from tinytracker.quant.brevitas import calibrate

    scheme = validate_quant_config(cfg)
    t0 = time.perf_counter()
    best = None
    if cfg.quant.get("float_ckpt"):
        float_module = _load_float(cfg, float_module)
        float_ckpt = str(cfg.quant.float_ckpt)
        trainer = _float_trainer(cfg, callbacks=[])
    else:
        trainer = _float_trainer(cfg, callbacks=_float_callbacks(cfg, out_dir))
        log.info("training the float model for %d epochs before quantization",
                 cfg.quant.float_epochs)
        trainer.fit(float_module, datamodule=datamodule)
        float_ckpt = getattr(trainer.checkpoint_callback, "best_model_path", "") or ""
        best = float_ckpt if float_ckpt and not trainer.fast_dev_run else None
    # With ckpt_path, trainer.test loads the best float weights into float_module: the model
    # that is tested here is the one quantized below.
    ref = trainer.test(float_module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    float_s = time.perf_counter() - t0

    module = GazeModule(
        net=scheme.net_config(OmegaConf.to_container(cfg.model.net, resolve=True)),
        optimizer=_plain(cfg.quant.get("optimizer")),
        scheduler=_plain(cfg.quant.get("scheduler")),
        scheduler_interval=cfg.model.get("scheduler_interval", "epoch"),
        input_spec=dict(float_module.hparams.get("input_spec") or {}),
    )
    module.net.load_float_weights(float_module.net)
    n_batches = 1 if cfg.trainer.get("fast_dev_run") else cfg.quant.calibration_batches
    seen = calibrate(module, itertools.islice(datamodule.train_dataloader(), n_batches))
    log.info("quantized %s (%s), activation ranges calibrated on %d training batches",
             cfg.model.name, scheme.as_dict(), seen)

    metrics: dict[str, Any] = {
        "test/error_cm_float_reference": float(ref[0]["test/error_cm"]),
        "quant/mode": cfg.quant.mode,
        "quant/float_checkpoint": float_ckpt or None,
        "quant/float_s": float_s,
        "quant/calibration_batches": seen,
        **scheme.metrics(),
    }
    fine_tune = cfg.quant.mode == "qat"
    return QuantStart(module, fine_tune, metrics,
                      trainer_overrides={"max_epochs": cfg.quant.epochs} if fine_tune else {})


def _load_float(cfg: DictConfig, built: GazeModule) -> GazeModule:
    """The float module of ``quant.float_ckpt``, checked against this run's model and data."""
    path = cfg.quant.float_ckpt
    ckpt = load_checkpoint(path)
    require_kind(ckpt, path, "quant.float_ckpt", quantized=False,
                 hint="QAT and PTQ start from the float run's checkpoint (its metrics.json "
                      "'checkpoint'); to resume a QAT run pass ckpt_path=... instead.")
    hp = ckpt["hyper_parameters"]
    diffs = config_differences(dict(built.hparams["net"]), hp.get("net"), "model.net")
    diffs += config_differences(
        {k: v for k, v in (built.hparams.get("input_spec") or {}).items() if v is not None},
        {k: v for k, v in (hp.get("input_spec") or {}).items() if v is not None}, "data",
    )
    if diffs:
        raise CheckpointKindError(
            f"quant.float_ckpt={path} was trained with another model config: "
            + "; ".join(diffs)
            + ". Pass the overrides of the float run (e.g. +experiment=... or data.*), or a "
            "checkpoint of this config."
        )
    return module_from_checkpoint(path)


def _float_trainer(cfg: DictConfig, callbacks: list) -> L.Trainer:
    return instantiate(cfg.trainer, max_epochs=cfg.quant.float_epochs, callbacks=callbacks,
                       logger=False)


def _float_callbacks(cfg: DictConfig, out_dir: Path) -> list:
    """The run's callbacks, checkpointing into ``checkpoints/float`` instead."""
    group = OmegaConf.to_container(cfg.get("callbacks") or {}, resolve=True)
    assert isinstance(group, dict)
    callbacks = []
    for c in group.values():
        if not c or "_target_" not in c:
            continue
        if issubclass(get_class(c["_target_"]), ModelCheckpoint):
            c = {**c, "dirpath": str(out_dir / "checkpoints" / "float"), "save_last": False}
        callbacks.append(instantiate(c))
    return callbacks


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if node is not None else None
