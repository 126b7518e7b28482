"""What a run records about itself, through the real entry point: the debug configs
(``debug=fdr|limit|overfit|profiler``), ``tags``, the git state, the end-of-run summary, and
the paper's recipe (``+experiment=paper``)."""

from __future__ import annotations

import csv
import logging
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import (
    REPO,
    SMALL_DATA,
    compose_config,
    missing_install,
    read_metrics,
    run_module,
    train_in_process,
)
from tests.wandb_log import read_wandb_config, read_wandb_run, read_wandb_summary
from tinytracker.config import ConfigError
from tinytracker.tracking import git_state
from tinytracker.train import train


@pytest.fixture(scope="module")
def git() -> str:
    path = shutil.which("git")
    if path is None:
        missing_install("git is not installed (apt-get install git)")
    return path


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _expected_git_keys() -> dict:
    """What git itself says about this checkout (None, None when it is not one)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        return {"git/commit": None, "git/dirty": None}
    status = _git(REPO, "status", "--porcelain", "--untracked-files=no")
    return {"git/commit": _git(REPO, "rev-parse", "HEAD"), "git/dirty": status != ""}


def _summary_block(text: str) -> str:
    """The summary's lines (from its title to the git line) out of a log or stdout."""
    match = re.search(r"run summary.*?\n(?:  .*\n)*?  git .*", text)
    assert match, f"no run summary in:\n{text[-3000:]}"
    return match.group(0)


# ----------------------------------------------------------------------------- debug configs
def test_debug_fdr_records_tags_and_git_in_metrics_and_wandb(tmp_path, cache_dir, caplog):
    """debug=fdr with W&B chosen on top: the W&B run's tags, config and summary, and
    metrics.json, say it is a debug run and which commit made it; the summary is logged."""
    caplog.set_level(logging.INFO, logger="tinytracker.train")
    metrics = train_in_process(tmp_path, "debug=fdr", "logger=wandb", "tags=[a,b]", *SMALL_DATA)
    assert read_metrics(tmp_path)["tags"] == metrics["tags"]
    assert metrics["tags"] == ["a", "b", "debug"]
    assert metrics["debug_run"] == "fdr"
    expected_git = _expected_git_keys()
    assert {k: metrics[k] for k in expected_git} == expected_git
    assert metrics["train/epochs"] == 1 and metrics["checkpoint"] is None  # fdr saves none

    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    assert list(read_wandb_run(run_dir).tags) == ["a", "b", "debug"]
    config = read_wandb_config(run_dir)
    assert config["git"] == {"commit": expected_git["git/commit"],
                             "dirty": expected_git["git/dirty"]}
    assert config["debug_run"] == "fdr" and config["tags"] == ["a", "b"]
    summary = read_wandb_summary(run_dir)
    assert summary["tags"] == ["a", "b", "debug"]
    assert summary["git/commit"] == expected_git["git/commit"]

    block = _summary_block(caplog.text)
    assert "DEBUG RUN (debug=fdr), not a result" in block
    assert f"{metrics['test/error_cm']:.3f} cm = " in block
    ratio = metrics["test/error_cm"] / metrics["baseline/mean_predictor_error_cm"]
    assert f"{ratio:.2f}x the mean predictor" in block
    floor = metrics["baseline/irreducible_error_cm"]
    assert floor > 0 and f"the irreducible floor ({floor:.3f} cm)" in block
    assert f"{metrics['model/params']:,} params" in block
    assert f"{metrics['model/size_int8_bytes'] / 1000:.1f} KB int8" in block
    assert str(tmp_path / "metrics.json") in block
    assert f"wandb sync {run_dir}" in block
    assert "tags        a, b, debug" in block


def _steps(run_dir: Path) -> list[dict]:
    with open(run_dir / "csv" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_debug_limit_runs_few_batches_and_tests_its_best_checkpoint(tmp_path, cache_dir, caplog):
    caplog.set_level(logging.INFO, logger="tinytracker.train")
    metrics = train_in_process(tmp_path, "debug=limit", *SMALL_DATA)
    assert metrics["debug_run"] == "limit" and metrics["tags"] == ["debug"]
    assert metrics["train/epochs"] == 3
    # 4 training batches of the 8 in each of 3 epochs, each step logged (log_every_n_steps=1)
    train_steps = [r for r in _steps(tmp_path) if r.get("train/loss_step")]
    assert len(train_steps) == 12
    assert Path(metrics["checkpoint"]).is_file()
    assert f"checkpoint  {metrics['checkpoint']}" in _summary_block(caplog.text)
    assert "W&B run     none" in _summary_block(caplog.text)  # debug runs log CSV only


def test_debug_overfit_config_fits_one_batch_without_augmentation_or_decay(tmp_path, cache_dir):
    cfg = compose_config("train", "debug=overfit")
    assert cfg.trainer.overfit_batches == 1 and cfg.trainer.max_epochs == 100
    assert cfg.data.augment.enabled is False and cfg.model.scheduler is None

    metrics = train_in_process(tmp_path, "debug=overfit", "trainer.max_epochs=10", *SMALL_DATA)
    assert metrics["debug_run"] == "overfit" and metrics["train/epochs"] == 10
    errors = [float(r["train/error_cm"]) for r in _steps(tmp_path) if r.get("train/error_cm")]
    assert len(errors) == 10
    # the same 8 frames every epoch: the error falls far below where it started
    assert errors[-1] < 0.5 * errors[0], errors


def test_debug_profiler_writes_its_report_into_the_run_dir(tmp_path, cache_dir):
    metrics = train_in_process(tmp_path, "debug=profiler", *SMALL_DATA)
    assert metrics["debug_run"] == "profiler" and metrics["train/epochs"] == 1
    report = (tmp_path / "fit-profiler.txt").read_text()
    assert "run_training_epoch" in report and "Total time" in report
    assert (tmp_path / "test-profiler.txt").is_file()


def test_debug_runs_write_under_outputs_debug_and_cfg_job_prints_as_before(tmp_path):
    cfg = compose_config("train", "debug=fdr")
    assert "/outputs/debug/" in cfg.out_dir
    assert list(cfg.logger) == ["csv"] and cfg.trainer.fast_dev_run is True
    assert list(compose_config("train", "debug=fdr", "logger=wandb").logger) == ["wandb"]

    job = run_module("tinytracker.train", "debug=fdr", "tags=[a,b]", "--cfg", "job")
    assert "task_name: train" in job.stdout and "debug_run: fdr" in job.stdout
    assert "run summary" not in job.stdout + job.stderr


@pytest.mark.parametrize("tags", ["tags=one", "tags=[a,1]", "tags=['']"])
def test_tags_must_be_a_list_of_words(tmp_path, tags):
    cfg = compose_config("train", tags, *SMALL_DATA, out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"tags must be a list of words, e\.g\. tags=\[baseline"):
        train(cfg)


def test_train_command_prints_summary_into_stdout_and_train_log(tmp_path, cache_dir):
    """The command line as a user types it: ``tags=[a,b]`` parsed by Hydra, the summary on
    stdout and the same text in train.log."""
    proc = run_module("tinytracker.train", "debug=fdr", "tags=[a,b]", f"out_dir={tmp_path}",
                      *SMALL_DATA)
    metrics = read_metrics(tmp_path)
    assert metrics["tags"] == ["a", "b", "debug"]
    printed = _summary_block(proc.stdout)
    assert printed == _summary_block((tmp_path / "train.log").read_text())
    assert f"metrics     {tmp_path / 'metrics.json'}" in printed
    assert "x the mean predictor" in printed and "x the irreducible floor" in printed


# ----------------------------------------------------------------------------- git state
def test_git_state_of_a_checkout_clean_dirty_and_none(tmp_path, git):
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "a.py").write_text("x = 1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(repo, "rev-parse", "HEAD")
    assert git_state(repo) == {"git/commit": head, "git/dirty": False}
    (repo / "untracked.txt").write_text("run output\n")  # untracked files do not count
    assert git_state(repo) == {"git/commit": head, "git/dirty": False}
    (repo / "pkg" / "a.py").write_text("x = 2\n")
    assert git_state(repo) == {"git/commit": head, "git/dirty": True}

    unknown = {"git/commit": None, "git/dirty": None}
    assert git_state(None) == unknown  # an installed wheel: no source checkout
    assert git_state(tmp_path / "not-a-repo") == unknown  # missing folder
    (tmp_path / "plain").mkdir()
    assert git_state(tmp_path / "plain") == unknown
    # a folder inside another repository is not that repository's checkout
    assert git_state(repo / "pkg") == unknown
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    _git(fresh, "init", "-q")
    assert git_state(fresh) == unknown  # no commit yet


# ----------------------------------------------------------------------------- paper recipe
def test_paper_experiment_composes_with_gazecapture(tmp_path):
    import torch

    from tinytracker.assemble import build_module
    from tinytracker.config import validate_train_config

    cfg = compose_config("train", "+experiment=paper", "data=gazecapture",
                         f"data.root={tmp_path}", out_dir=tmp_path)
    validate_train_config(cfg)
    assert cfg.data.source == "gazecapture" and cfg.data.batch_size == 128
    assert cfg.trainer.max_epochs == 15 and cfg.tags == ["paper"]
    assert cfg.model.optimizer._target_ == "torch.optim.Adam" and cfg.model.optimizer.lr == 1e-3
    module = build_module(cfg)
    opt = module.configure_optimizers()
    assert opt["lr_scheduler"]["interval"] == "step"
    scheduler = opt["lr_scheduler"]["scheduler"]
    assert isinstance(scheduler, torch.optim.lr_scheduler.ExponentialLR)
    # Keras ExponentialDecay(1e-3, decay_steps=10000, decay_rate=0.9): x0.9 every 10000 steps
    assert scheduler.gamma ** 10000 == pytest.approx(0.9, rel=1e-9)
    assert module.net.output_activation == "tanh"


def test_paper_experiment_runs_on_the_synthetic_default(tmp_path, cache_dir):
    metrics = train_in_process(tmp_path, "+experiment=paper", "trainer.fast_dev_run=true",
                               "logger=csv", *SMALL_DATA)
    assert metrics["tags"] == ["paper"] and metrics["debug_run"] is None
    assert metrics["data/name"] == "synthetic" and metrics["test/error_cm"] > 0
