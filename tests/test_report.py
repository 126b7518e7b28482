"""The accuracy-versus-size report: the Pareto front, the report files, and a real search."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from tests.conftest import SMALL_DATA, read_metrics, run_module
from tinytracker.models import ITracker
from tinytracker.models.footprint import quantized_size_bytes
from tinytracker.report.pareto import pareto_front
from tinytracker.report.references import ITRACKER_INT8_BYTES


def test_pareto_front_on_hand_made_points():
    points = [
        (100, 3.0),   # 0 front: smallest
        (200, 2.0),   # 1 front
        (200, 2.5),   # 2 same size as 1, more error: dominated
        (300, 2.0),   # 3 same error as 1, bigger: dominated
        (400, 1.0),   # 4 front
        (400, 1.0),   # 5 duplicate of 4: neither dominates the other, both on the front
        (150, 3.5),   # 6 dominated by 1 (bigger error than 0 too)
        (500, 1.5),   # 7 dominated by 4
        (50, 4.0),    # 8 front: smallest size of all
        (100, 3.0),   # 9 duplicate of 0
    ]
    assert pareto_front(points) == [8, 0, 9, 1, 4, 5]


@pytest.mark.parametrize("points, front", [
    ([], []),
    ([(1.0, 1.0)], [0]),
    ([(2.0, 1.0), (1.0, 2.0)], [1, 0]),         # a trade-off: both
    ([(1.0, 1.0), (2.0, 2.0)], [0]),             # one better in both
    ([(1.0, 2.0), (1.0, 1.0), (1.0, 1.0)], [1, 2]),  # same x: the least y, with its copy
])
def test_pareto_front_small_cases(points, front):
    assert pareto_front(points) == front


def test_pareto_front_refuses_nan():
    with pytest.raises(ValueError, match="point 1"):
        pareto_front([(1.0, 1.0), (float("nan"), 2.0)])


def test_itracker_reference_size_is_our_footprint():
    assert quantized_size_bytes(ITracker(image_size=224), 8) == ITRACKER_INT8_BYTES


def _fake_run(root: Path, name: str, error_cm: float | None, size: int,
              overrides: list[str]) -> None:
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    metrics = {"model/size_int8_bytes": size, "model/params": size, "model/macs": 10 * size,
               "model/name": "tinytracker", "data/name": "synthetic", "quant/weight_bits": 8}
    if error_cm is not None:
        metrics["test/error_cm"] = error_cm
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))


def test_report_writes_figure_table_and_csv(tmp_path):
    runs = tmp_path / "sweep"
    common = ["hparams_search=pareto", "trainer.max_epochs=2"]
    _fake_run(runs, "0", 1.50, 400_000, [*common, "model.net.width_mult=1.0"])
    _fake_run(runs, "1", 1.80, 100_000, [*common, "model.net.width_mult=0.25"])
    _fake_run(runs, "2", 2.00, 300_000, [*common, "model.net.width_mult=0.75"])  # dominated
    _fake_run(runs, "3", None, 200_000, [*common, "model.net.width_mult=0.5"])   # no test
    out = tmp_path / "report"
    proc = run_module("tinytracker.report", f"runs={runs}", f"out_dir={out}")
    assert "skipped" in proc.stderr and str(runs / "3" / "metrics.json") in proc.stderr

    table = (out / "pareto.md").read_text()
    rows = [ln for ln in table.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [r.split(" | ")[1] for r in rows] == ["1", "0"]  # front, least size first
    assert "`model.net.width_mult=0.25`" in rows[0] and "| 1.800 | 97.7 |" in rows[0]
    assert "trainer.max_epochs=2" not in rows[0]  # shared overrides are listed once, below
    assert "Overrides common to all runs: `hparams_search=pareto` `trainer.max_epochs=2`" in table
    assert "2 Pareto-optimal of 3 runs" in table
    assert f"`{runs / '3' / 'metrics.json'}`" in table  # the skipped run is named

    with (out / "runs.csv").open() as f:
        rows = {r["run"]: r for r in csv.DictReader(f)}
    assert {k: rows[k]["pareto"] for k in rows} == {"0": "True", "1": "True", "2": "False"}
    image = matplotlib.image.imread(out / "pareto.png")
    assert image.shape[0] > 500 and image.shape[1] > 800


@pytest.mark.parametrize("runs, message", [
    ("{tmp}/nowhere", "no such file or directory"),
    ("{tmp}/empty", "no metrics.json"),
    ("{tmp}/bad", "bad/metrics.json: not a readable metrics.json"),
    ("wandb://entity/project", "expected wandb://<entity>/<project>/<sweep-id>"),
    ("wandb://entity/project/abc123", "WANDB_MODE=offline"),
])
def test_report_errors_name_the_problem(tmp_path, runs, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metrics.json").write_text("{not json")
    proc = run_module("tinytracker.report", f"runs={runs.format(tmp=tmp_path)}",
                      f"out_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr


def test_wandb_runs_without_credentials_fail_clearly(tmp_path):
    env = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "WANDB_BASE_URL": "http://127.0.0.1:9",
           "HOME": str(tmp_path), "NETRC": str(tmp_path / "netrc")}
    proc = run_module("tinytracker.report", "runs=wandb://entity/project/abc123",
                      f"out_dir={tmp_path / 'out'}", env=env, check=False, timeout=120)
    assert proc.returncode == 1
    assert "could not read the sweep from W&B" in proc.stderr
    assert "runs=<folder of runs>" in proc.stderr


@pytest.mark.slow  # a real multi-trial search; the quick tier runs report on made runs
def test_pareto_search_and_report_end_to_end(tmp_path, cache_dir):
    """A real 3-trial NSGA-II search (QAT, tiny data) and its report."""
    search = tmp_path / "search"
    run_module("tinytracker.train", "-m", "hparams_search=pareto", f"out_dir={search}",
               "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.population_size=3",
               *SMALL_DATA, "trainer.max_epochs=1", "quant.epochs=1",
               "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
               "quant.calibration_batches=1", "logger=csv", "callbacks.progress_bar=null",
               env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, timeout=600)
    trials = sorted(p.parent for p in search.glob("*/metrics.json"))
    assert [t.name for t in trials] == ["0", "1", "2"]
    results = yaml.safe_load((search / "optimization_results.yaml").read_text())
    for trial in trials:
        metrics = read_metrics(trial)
        assert metrics["quant/mode"] == "qat"
        overrides = yaml.safe_load((trial / ".hydra" / "overrides.yaml").read_text())
        assert f"quant.weight_bits={metrics['quant/weight_bits']}" in overrides
    # Optuna's own front (from the returned (error, bytes) pairs) is the report's front
    optuna_front = sorted(tuple(s["values"]) for s in results["solutions"])

    out = tmp_path / "report"
    run_module("tinytracker.report", f"runs={search}", f"out_dir={out}")
    with (out / "runs.csv").open() as f:
        ours = sorted((float(r["error_cm"]), float(r["size_int8_bytes"]))
                      for r in csv.DictReader(f) if r["pareto"] == "True")
    assert ours == [pytest.approx(p) for p in optuna_front]
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "Pareto-optimal of 3 runs" in (out / "pareto.md").read_text()
