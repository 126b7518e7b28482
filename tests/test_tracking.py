"""Tracking: a real offline W&B run holds the summary; resume continues a killed run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import (
    REPO,
    SMALL_DATA,
    compose_config,
    kill_once_loadable,
    read_metrics,
    run_module,
    train_in_process,
)
from tests.wandb_log import read_wandb_artifacts, read_wandb_config, read_wandb_summary
from tinytracker.models.checkpoint import CheckpointError, load_checkpoint
from tinytracker.tracking import WandbRunRef, log_to_wandb_run, update_json_summary, write_metrics

SHORT = [*SMALL_DATA, "trainer.max_epochs=1", "trainer.limit_train_batches=2",
         "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]


@pytest.mark.slow
def test_wandb_offline_run_holds_summary_and_artifact(tmp_path, cache_dir):
    run_module("tinytracker.train", *SHORT, f"out_dir={tmp_path}", "logger=wandb")
    metrics = read_metrics(tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, f"expected one offline W&B run, found {runs}"
    summary = read_wandb_summary(runs[0])
    for key in ("test/error_cm", "model/params", "model/macs", "model/size_int8_bytes",
                "baseline/mean_predictor_error_cm"):
        assert summary[key] == pytest.approx(metrics[key]), key
    # the resolved config was logged
    config = read_wandb_config(runs[0])
    assert config["model"]["net"]["_target_"] == "tinytracker.models.TinyTracker"
    assert config["data"]["name"] == "synthetic"
    # the best checkpoint was logged as a model artifact of this run
    artifacts = read_wandb_artifacts(runs[0])
    assert [a.type for a in artifacts] == ["model"]
    assert any(e.path.endswith(".ckpt") for e in artifacts[0].manifest.contents)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_resume_after_kill_ends_at_same_epoch_count(tmp_path, cache_dir):
    epochs = 4
    first = tmp_path / "killed"
    cmd = [sys.executable, "-m", "tinytracker.train", *SMALL_DATA, f"out_dir={first}",
           f"trainer.max_epochs={epochs}", "logger=csv"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    last = first / "checkpoints" / "last.ckpt"
    kill_once_loadable(proc, last)  # no sleep that races: killed once last.ckpt loads
    killed_at = load_checkpoint(last)["epoch"]
    assert killed_at < epochs - 1, "run finished before it could be killed"
    assert not (first / "metrics.json").exists()

    resumed = tmp_path / "resumed"
    run_module("tinytracker.train", *SMALL_DATA, f"out_dir={resumed}",
               f"trainer.max_epochs={epochs}", "logger=csv", f"ckpt_path={last}")
    assert read_metrics(resumed)["train/epochs"] == epochs
    final = load_checkpoint(resumed / "checkpoints" / "last.ckpt")
    assert final["epoch"] == epochs - 1
    # the resumed run trained only the remaining epochs
    log = (resumed / "csv" / "metrics.csv").read_text().splitlines()
    header = log[0].split(",")
    epoch_col = header.index("epoch")
    trained = {int(float(row.split(",")[epoch_col])) for row in log[1:]
               if row.split(",")[epoch_col]}
    assert min(trained) == killed_at + 1


def test_unsafe_checkpoint_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"net": {}}, "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        load_checkpoint(path)
    assert not marker.exists()
    # the training command refuses it too (in-process: the command's own train())
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        train_in_process(tmp_path / "r", f"ckpt_path={path}")
    assert not marker.exists()


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_write_metrics_extends_and_keeps_existing_keys(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, {"test/error_cm": 1.5, "model/params": 10})
    write_metrics(path, {"quant/weight_bits": 8, "test/error_cm": 1.25, "val/loss": math.nan})
    data = json.loads(path.read_text())
    assert data == {"test/error_cm": 1.25, "model/params": 10, "quant/weight_bits": 8,
                    "val/loss": None}


def test_write_metrics_writes_only_metrics_json(tmp_path):
    with pytest.raises(ValueError, match="pack.json.*update_json_summary"):
        write_metrics(tmp_path / "pack.json", {"frames": 3})
    assert not (tmp_path / "pack.json").exists()
    path = update_json_summary(tmp_path / "pack.json", {"frames": 3, "pack": tmp_path})
    assert json.loads(path.read_text()) == {"frames": 3, "pack": str(tmp_path)}


def test_numbers_and_files_added_to_an_offline_run_are_in_its_log(tmp_path):
    """log_to_wandb_run (what export uses) through real wandb, read back from the .wandb log."""
    ref = WandbRunRef("abc123", "tinytracker-test")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really a model")
    run_dir = log_to_wandb_run(ref, tmp_path / "save", "offline",
                               {"export/size_bytes": 18, "export/error_cm": 1.5}, [model],
                               artifact_name="model-abc123")
    assert run_dir.name.startswith("offline-run-") and run_dir.name.endswith("-abc123")
    summary = read_wandb_summary(run_dir)
    assert summary["export/size_bytes"] == 18 and summary["export/error_cm"] == 1.5
    artifacts = read_wandb_artifacts(run_dir)
    assert [(a.type, [e.path for e in a.manifest.contents]) for a in artifacts] == \
        [("model", ["model.onnx"])]


@pytest.mark.slow
def test_online_mode_without_network_falls_back_to_offline(tmp_path, cache_dir):
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_BASE_URL": "http://127.0.0.1:9"}
    proc = run_module("tinytracker.train", *SHORT, f"out_dir={tmp_path}", "logger=wandb",
                      env=env)
    assert "logging offline instead" in proc.stderr + proc.stdout
    assert read_metrics(tmp_path)["test/error_cm"] > 0
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_last_checkpoint_is_the_last_epoch_not_the_best(tmp_path):
    """The default callbacks' ``last.ckpt`` is the last epoch even when validation got worse
    after the first (Lightning 2.6's ModelCheckpoint writes it only with a new best): what a
    killed run resumes from."""
    import lightning as L
    from hydra.utils import instantiate
    from torch import nn

    class Worsening(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).pow(2).mean()

        def validation_step(self, batch, _):
            self.log("val/error_cm", float(self.current_epoch))  # best at epoch 0

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)),
                                       batch_size=2)
    cfg = compose_config("train", out_dir=tmp_path).callbacks.model_checkpoint
    trainer = L.Trainer(max_epochs=3, callbacks=[instantiate(cfg)], logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Worsening(), data, data)
    ckpts = tmp_path / "checkpoints"
    def epoch(path):
        return torch.load(path, map_location="cpu", weights_only=True)["epoch"]

    assert epoch(ckpts / "last.ckpt") == 2
    (best,) = ckpts.glob("epoch000-*.ckpt")  # the top-k file is still the best epoch
    assert epoch(best) == 0
    assert sorted(p.name for p in ckpts.iterdir()) == [best.name, "last.ckpt"]
