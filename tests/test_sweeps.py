"""W&B sweep files, checked without a W&B server by W&B's own code.

Every ``sweeps/*.yaml`` is validated by W&B's sweep engine (the ``sweeps`` package, the code
behind ``wandb sweep``), one parameter set is proposed by that engine, and the command line is
built from it the way ``wandb agent`` builds it, then run with ``fast_dev_run``.
A new sweep file is picked up automatically.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import REPO, SMALL_DATA, read_metrics
from tests.wandb_log import read_wandb_summary
from tinytracker.cli import experiment_alias
from tinytracker.config import POSITIONS, validate_train_config
from tinytracker.models.footprint import quantized_size_bytes

try:
    import sweeps
    from sweeps.config import fill_validate_schema
except ImportError as err:  # a clear failure, not a skip: CI must run these tests
    raise ImportError(
        "tests/test_sweeps.py needs W&B's sweep engine: pip install --no-deps sweeps==0.3.0 "
        "(its metadata asks for numpy<2, which would downgrade numpy; it works with numpy 2)"
    ) from err

SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
# What train.py writes to metrics.json and the W&B summary of every run.
SUMMARY_KEYS = ("test/error_cm", "model/size_int8_bytes", "model/params", "model/macs")


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def agent_command(sweep_config: dict[str, Any], args: dict[str, dict[str, Any]]) -> list[str]:
    """The command ``wandb agent`` runs for one proposed run, built with W&B's own helpers the
    way ``wandb.wandb_agent.Agent._command_run`` builds it (wandb 0.31)."""
    from wandb.sdk.launch.sweeps import utils as sweep_utils

    command = {"args": args, "program": sweep_config.get("program"), "run_id": "test"}
    # create_sweep_command fills ${envvar:...} macros in place: give it a copy
    sweep_command = sweep_utils.create_sweep_command(list(sweep_config.get("command") or []))
    sweep_vars = sweep_utils.create_sweep_command_args(command)
    sweep_vars["interpreter"] = ["python"]
    sweep_vars["program"] = [command["program"]]
    sweep_vars["env"] = ["/usr/bin/env"]
    command_list: list[str] = []
    for c in map(str, sweep_command):
        if c.startswith("${") and c.endswith("}"):
            command_list += sweep_vars.get(c[2:-1]) or []
        else:
            command_list.append(c)
    return command_list


def test_there_are_sweeps_for_the_issue():
    names = {p.stem for p in SWEEP_FILES}
    assert {"qat_bits_width_size", "architectures", "lr_augment", "ablation"} <= names


def test_ablation_grid_is_every_position_of_both_models_and_each_run_composes():
    """sweeps/ablation.yaml (issue 15): model.position x TinyTracker / TinyTrackerS x 3 seeds,
    QAT; every run W&B's grid proposes composes into a valid config of that model."""
    config = fill_validate_schema(_load(REPO / "sweeps" / "ablation.yaml"))
    params = config["parameters"]
    assert params["model.position"]["values"] == list(POSITIONS)
    assert len(set(params["seed"]["values"])) >= 3
    runs, proposed = [], []
    while (run := sweeps.next_run(config, runs)) is not None:  # validated above
        proposed.append(run.config)
        runs.append(sweeps.SweepRun(name=f"r{len(runs)}", state=sweeps.RunState.finished,
                                    config=run.config))
    assert len(proposed) == 2 * len(POSITIONS) * len(params["seed"]["values"])
    grid = {tuple(str(a[k]["value"]) for k in ("experiment", "model.position", "seed"))
            for a in proposed}
    assert len(grid) == len(proposed)  # each combination once
    seen = set()
    # composing is what takes time: one run of each model and position (seeds: the grid above)
    firsts = {(a["experiment"]["value"], a["model.position"]["value"]): a for a in proposed}
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        for args in firsts.values():
            argv = experiment_alias(agent_command(config, args)[4:])
            cfg = compose("train", overrides=[*argv, "paths.root_dir=."])
            validate_train_config(cfg)
            assert "quant" in cfg and cfg.model.position == args["model.position"]["value"]
            assert cfg.seed == args["seed"]["value"]
            seen.add((cfg.model.name, cfg.model.position))
    assert seen == {(m, p) for m in ("tinytracker", "tinytracker_s") for p in POSITIONS}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_sweep_file_passes_wandb_schema(path):
    config = _load(path)
    fill_validate_schema(config)  # raises jsonschema.ValidationError on a bad file
    assert config["metric"]["name"] in SUMMARY_KEYS, "optimise a metric every run logs"
    command = config["command"]
    assert isinstance(command, list), "command: must be a YAML block list"
    assert command[:4] == ["${env}", "${interpreter}", "-m", "tinytracker.train"]
    assert "${args_no_hyphens}" in command, "Hydra takes key=value overrides"


def test_wandb_schema_refuses_a_plus_in_parameter_names():
    """Why the architecture sweep passes ``experiment=<name>`` (cli.experiment_alias)."""
    bad = {"method": "grid", "command": ["${args_no_hyphens}"],
           "parameters": {"+experiment": {"values": ["baseline"]}}}
    with pytest.raises(Exception, match="does not match"):
        fill_validate_schema(bad)
    assert experiment_alias(["-m", "experiment=baseline", "seed=1", "+experiment=qat"]) == [
        "-m", "+experiment=baseline", "seed=1", "+experiment=qat"]


@pytest.mark.slow  # a training run per sweep file; the quick tier checks their schema
@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_agent_command_runs(path, tmp_path, cache_dir):
    config = fill_validate_schema(_load(path))
    proposed = sweeps.next_run(config, [], validate=True)
    args = proposed.config
    cmd = agent_command(config, args)
    assert cmd[0] == "/usr/bin/env" and cmd[1] == "python"
    flags = [f"{k}={v['value']}" for k, v in args.items()]
    assert cmd[-len(flags):] == flags

    out = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([*cmd, "trainer.fast_dev_run=true", *SMALL_DATA, f"out_dir={out}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    metrics = read_metrics(out)
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "the sweep run logs to W&B (offline here)"
    summary = read_wandb_summary(runs[0])
    for key in SUMMARY_KEYS:
        assert summary[key] == pytest.approx(metrics[key]), key
    # the proposed parameters reached the composed config
    run_cfg = OmegaConf.load(out / ".hydra" / "config.yaml")
    for key, value in args.items():
        if key == "experiment":
            assert f"+experiment={value['value']}" in OmegaConf.load(
                out / ".hydra" / "overrides.yaml")
        else:
            assert OmegaConf.select(run_cfg, key) == pytest.approx(value["value"]), key
    if "quant/weight_bits" in metrics:
        _check_size_follows_bits(metrics)


def _check_size_follows_bits(metrics: dict[str, Any]) -> None:
    """A QAT run's INT8 size counts its kernels at the run's weight bits, not at 8."""
    ckpt = torch.load(metrics["checkpoint_last"], map_location="cpu", weights_only=True)
    net = instantiate(ckpt["hyper_parameters"]["net"])
    bits = metrics["quant/weight_bits"]
    assert set(net.kernel_bits.values()) == {bits}
    # every quantized kernel at the run's bits (a late net's host head stays float: not one)
    assert metrics["model/size_int8_bytes"] == quantized_size_bytes(net, net.kernel_bits)
    if bits != 8:
        assert metrics["model/size_int8_bytes"] < quantized_size_bytes(net, 8)


@pytest.mark.parametrize("sweep_id, mode", [("abc123", "online"), (None, "offline")])
def test_runs_started_by_a_sweep_agent_log_online(monkeypatch, sweep_id, mode):
    import tinytracker.config  # noqa: F401  (registers the resolvers)

    monkeypatch.delenv("WANDB_MODE", raising=False)
    if sweep_id:
        monkeypatch.setenv("WANDB_SWEEP_ID", sweep_id)
    else:
        monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("train", overrides=["paths.root_dir=."])
    assert cfg.logger.wandb.mode == mode
