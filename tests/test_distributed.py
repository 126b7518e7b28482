"""Multi-process training and evaluation (Lightning DDP on CPU, Gloo), and the SLURM configs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from tests.conftest import SMALL_DATA, read_metrics, run_module
from tests.wandb_log import read_wandb_summary

DDP_CPU = ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"]
# 17 frames per subject: odd val and test splits (17 frames each), which a padding sampler
# would split 9 + 9 between two ranks, counting a frame twice.
ODD_DATA = [*SMALL_DATA, "data.synthetic.frames_per_subject=17"]


def _predictions(run: Path) -> list[list[str]]:
    with open(run / "predictions.csv") as fh:
        return list(csv.reader(fh))


@pytest.mark.slow
def test_two_process_ddp_run_and_evaluation_match_one_process(tmp_path, cache_dir):
    run = tmp_path / "ddp"
    proc = run_module("tinytracker.train", *ODD_DATA, *DDP_CPU, f"out_dir={run}",
                      "trainer.max_epochs=2", "trainer.limit_train_batches=3", "logger=wandb")
    output = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in output, output[-3000:]
    assert (run / "train.log").is_file() and (run / "train_rank1.log").is_file()

    # rank 0 alone writes metrics.json, the checkpoints and the W&B run
    metrics = read_metrics(run)
    assert metrics["train/epochs"] == 2
    assert metrics["data/test_frames"] % 2 == 1
    assert metrics["test/frames"] == metrics["data/test_frames"]  # each test frame once
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted(
        [Path(metrics["checkpoint"]).name, "last.ckpt"])
    wandb_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 1
    assert read_wandb_summary(wandb_runs[0])["test/error_cm"] == pytest.approx(
        metrics["test/error_cm"])

    # the same checkpoint evaluated by one process and by two gives the same error
    one, two = tmp_path / "eval1", tmp_path / "eval2"
    ckpt = f"ckpt_path={metrics['checkpoint']}"
    run_module("tinytracker.evaluate", ckpt, *ODD_DATA, f"out_dir={one}")
    run_module("tinytracker.evaluate", ckpt, *ODD_DATA, *DDP_CPU, f"out_dir={two}")
    single, double = read_metrics(one), read_metrics(two)
    assert (single["evaluate/processes"], double["evaluate/processes"]) == (1, 2)
    assert single["test/frames"] == double["test/frames"] == metrics["data/test_frames"]
    assert double["test/error_cm"] == pytest.approx(single["test/error_cm"], rel=1e-5)
    assert metrics["test/error_cm"] == pytest.approx(single["test/error_cm"], rel=1e-5)
    rows1, rows2 = _predictions(one), _predictions(two)
    assert len(rows1) - 1 == metrics["data/test_frames"]
    assert [r[:2] for r in rows1] == [r[:2] for r in rows2]  # same frames, same order


def test_ddp_inside_a_local_sweep_fails_before_training(tmp_path, cache_dir):
    proc = run_module("tinytracker.train", "-m", *SMALL_DATA, *DDP_CPU, f"out_dir={tmp_path}",
                      "trainer.fast_dev_run=true", "logger=csv", check=False)
    assert proc.returncode != 0
    assert "re-run the sweep" in proc.stdout + proc.stderr
    assert not list(tmp_path.rglob("metrics.json"))


def _hydra_cfg(*overrides: str):
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_slurm_launcher_config_has_the_cluster_knobs():
    cfg = _hydra_cfg("hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                     "hydra.launcher.gpus_per_node=4", "hydra.launcher.nodes=2", "trainer=ddp")
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.nodes) == ("gpu", 4, 2)
    assert launcher.tasks_per_node == 4  # one process per GPU, as Lightning's SLURMEnvironment
    for key in ("timeout_min", "mem_gb", "cpus_per_task"):
        assert launcher[key] is not None, key
    assert cfg.trainer.num_nodes == 1  # from SLURM_JOB_NUM_NODES inside the job


@pytest.mark.slow
def test_submitit_local_sweep_runs_two_trials(tmp_path, cache_dir):
    run_module("tinytracker.train", "-m", "hydra/launcher=submitit_local", *SMALL_DATA,
               f"out_dir={tmp_path}", "trainer.fast_dev_run=true", "logger=csv",
               "model.optimizer.lr=0.001,0.002", timeout=600)
    for trial, lr in ((0, 0.001), (1, 0.002)):
        assert read_metrics(tmp_path / str(trial))["test/error_cm"] > 0
        overrides = (tmp_path / str(trial) / ".hydra" / "overrides.yaml").read_text()
        assert f"model.optimizer.lr={lr}" in overrides
    assert len(list((tmp_path / ".submitit").glob("*/*_submitted.pkl"))) == 2  # 2 jobs
