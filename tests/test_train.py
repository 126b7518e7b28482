"""End-to-end training through the real entry point, on a small synthetic dataset."""

from __future__ import annotations

import re

import pytest
import torch
from hydra.errors import MissingConfigException

from tests.conftest import SMALL_DATA, compose_config, read_metrics, run_module, train_in_process
from tinytracker.config import ConfigError
from tinytracker.train import train

METRIC_KEYS = {
    "test/error_cm", "val/error_cm", "baseline/mean_predictor_error_cm", "model/params",
    "model/macs", "model/size_fp32_bytes", "model/size_int8_bytes", "model/name", "data/name",
    "checkpoint",
}


@pytest.mark.parametrize(
    "experiment, model_name",
    [(None, "tinytracker"), ("tinytracker", "tinytracker"), ("tinytracker_s", "tinytracker_s"),
     pytest.param("baseline", "itracker", marks=pytest.mark.slow)],  # 224 px: ~20 s on 2 cores
)
def test_fast_dev_run_every_experiment(tmp_path, cache_dir, experiment, model_name):
    """In-process (the command's own train() on the config it composes); the command itself
    runs in test_short_training_writes_checkpoints_and_metrics and the wheel test."""
    args = [*SMALL_DATA, "trainer.fast_dev_run=true", "logger=csv"]
    if experiment:
        args.append(f"+experiment={experiment}")
    train_in_process(tmp_path, *args)
    metrics = read_metrics(tmp_path)
    assert METRIC_KEYS - {"checkpoint", "val/error_cm"} <= set(metrics)
    assert metrics["model/name"] == model_name
    assert metrics["data/name"] == "synthetic"
    assert metrics["test/error_cm"] > 0
    assert metrics["model/size_fp32_bytes"] == 4 * metrics["model/params"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_short_training_writes_checkpoints_and_metrics(tmp_path, cache_dir):
    run_module("tinytracker.train", *SMALL_DATA, f"out_dir={tmp_path}", "trainer.max_epochs=2",
               "logger=csv")
    metrics = read_metrics(tmp_path)
    assert METRIC_KEYS <= set(metrics)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert metrics["checkpoint"].startswith(str(tmp_path / "checkpoints"))
    # the best checkpoint loads with weights_only semantics
    ckpt = torch.load(metrics["checkpoint"], map_location="cpu", weights_only=True)
    # the default's input (conf/data/synthetic.yaml: 64 px) travels in the checkpoint
    assert ckpt["hyper_parameters"]["input_spec"]["face_size"] == \
        compose_config("train").data.face_size == 64
    assert metrics["train/epochs"] == 2

    # evaluate the best checkpoint on the same data: same test error, plus the breakdowns
    eval_dir = tmp_path / "eval"
    run_module("tinytracker.evaluate", f"ckpt_path={metrics['checkpoint']}", *SMALL_DATA,
               f"out_dir={eval_dir}")
    evaluated = read_metrics(eval_dir)
    assert evaluated["test/error_cm"] == pytest.approx(metrics["test/error_cm"], rel=1e-4)
    assert evaluated["test/error_cm/device_type/phone"] == pytest.approx(
        evaluated["test/error_cm"])
    assert (eval_dir / "error_by_screen_position.png").stat().st_size > 1000
    rows = (eval_dir / "predictions.csv").read_text().splitlines()
    assert len(rows) - 1 == metrics["data/test_frames"]


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=-4", "data.batch_size"),
        ("data.face_size=8", "data.face_size"),
        ("model.net._target_=tinytracker.models.NoSuchModel", "model.net"),
        ("model.optimizer.lr=0", "model.optimizer.lr"),
        ("optimized_metric=[test/error_cm,1]", "optimized_metric"),
    ],
)
def test_invalid_config_fails_naming_the_key(tmp_path, cache_dir, override, key):
    """In-process: the config the command composes, through the command's own ``train``."""
    cfg = compose_config("train", *SMALL_DATA, override, "logger=csv",
                         "trainer.fast_dev_run=true", out_dir=tmp_path)
    with pytest.raises(ConfigError, match=re.escape(key)):
        train(cfg)
    assert not (tmp_path / "checkpoints").exists(), "must fail before training"


def test_invalid_config_exits_naming_the_key(tmp_path):
    """The command turns ConfigError into a non-zero exit that names the key."""
    proc = run_module("tinytracker.train", *SMALL_DATA, f"out_dir={tmp_path}",
                      "model.optimizer.lr=0", "logger=csv", check=False)
    assert proc.returncode != 0
    assert "invalid config: model.optimizer.lr must be > 0" in proc.stderr + proc.stdout
    assert not (tmp_path / "checkpoints").exists(), "must fail before training"


def test_unknown_model_group_fails_naming_it():
    with pytest.raises(MissingConfigException, match="model/resnet"):
        compose_config("train", "model=resnet")


def test_optimized_metric_list_returns_one_value_per_key():
    from tinytracker.train import optimized_value

    metrics = {"test/error_cm": 1.5, "model/size_int8_bytes": 1000}
    assert optimized_value(metrics, "test/error_cm") == 1.5
    assert optimized_value(metrics, ["test/error_cm", "model/size_int8_bytes"]) == (1.5, 1000.0)
    assert optimized_value(metrics, ["test/error_cm", "val/error_cm"]) is None  # not measured
    assert optimized_value(metrics, None) is None
