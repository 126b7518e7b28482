"""Assemble what a config names: the LightningModule of ``model``, and the DataModule that feeds
a trained model exactly the inputs it was trained on.

A library for the entry points (train, evaluate, export, calibrate, benchmark), so that none of
them imports another; it sits above ``models/`` and ``data/`` and joins them, which neither
does itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from tinytracker.config import build_net
from tinytracker.data.processed import check_split
from tinytracker.data.spec import SampleSpec, apply_record
from tinytracker.models.module import GazeModule


def build_module(cfg: DictConfig) -> GazeModule:
    """GazeModule from ``cfg.model``, recording ``cfg.data``'s input spec in its checkpoints.

    The network is built once here first, so a bad ``model.net`` fails naming the key
    before Lightning wraps the error.
    """
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    assert isinstance(model_cfg, dict)
    net = build_net(model_cfg["net"])
    spec = SampleSpec.from_data_config(cfg.data, tuple(net.input_keys))
    return GazeModule(
        net=model_cfg["net"],
        optimizer=model_cfg.get("optimizer"),
        scheduler=model_cfg.get("scheduler"),
        scheduler_interval=model_cfg.get("scheduler_interval", "epoch"),
        input_spec=spec.record(),
        channels_last=bool(model_cfg.get("channels_last", False)),
    )


def checkpoint_data(data_cfg: DictConfig, module: GazeModule, split: str):
    """DataModule (set up) and loader of ``split`` giving the inputs ``module`` was trained on."""
    return spec_data(data_cfg, module.hparams.get("input_spec"), module.input_keys, split)


def spec_data(data_cfg: DictConfig, input_spec: Mapping[str, Any] | None,
              input_keys: Sequence[str], split: str):
    """DataModule (set up) and loader of ``split`` with the preprocessing ``input_spec`` (a
    checkpoint's or an exported file's record) and the fields ``input_keys``; no augmentation."""
    check_split(split)
    with open_dict(data_cfg):
        apply_record(data_cfg, input_spec)
        data_cfg.augment.enabled = False
    datamodule = instantiate(data_cfg, _convert_="all")
    datamodule.set_inputs(tuple(input_keys))
    datamodule.prepare_data()
    datamodule.setup("test")
    loader = {"test": datamodule.test_dataloader, "val": datamodule.val_dataloader,
              "train": datamodule.train_dataloader}[split]()
    return datamodule, loader
