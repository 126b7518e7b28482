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


# --- seeds: runs that differ only by seed are one configuration --------------------------

def _config(seed: int, width: float, job: int, sweep: Path) -> dict:
    """A training run's composed config as Hydra saves it (.hydra/config.yaml), with the keys
    that differ between jobs of one multirun although they define no configuration."""
    return {
        "task_name": "train", "out_dir": str(sweep), "seed": seed, "ckpt_path": None,
        "test": True, "tags": [f"job{job}"],
        "data": {"name": "synthetic", "seed": "${seed}", "cache_dir": "${paths.cache_dir}",
                 "synthetic": {"seed": 0, "subjects": 120}, "batch_size": 64},
        "model": {"name": "tinytracker", "net": {"_target_": "tinytracker.models.TinyTracker",
                                                 "width_mult": width}},
        "trainer": {"_target_": "lightning.pytorch.Trainer", "max_epochs": 20,
                    "default_root_dir": "${paths.output_dir}"},
        "logger": {"wandb": {"name": f"run-{job}", "save_dir": "${paths.output_dir}",
                             "tags": "${tags}"}},
        "paths": {"root_dir": "${hydra:runtime.cwd}", "output_dir": "${hydra:runtime.output_dir}"},
    }


def _seed_run(sweep: Path, job: int, seed: int, width: float, error_cm: float | None,
              size: int, extra: dict | None = None) -> Path:
    """A job of ``tinytracker.train -m seed=... model.net.width_mult=...``; ``error_cm=None``:
    it crashed (config saved, no metrics.json)."""
    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(_config(seed, width, job, sweep)))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
        [f"seed={seed}", f"model.net.width_mult={width}", f"out_dir={sweep}"]))
    if error_cm is not None:
        metrics = {"test/error_cm": error_cm, "model/size_int8_bytes": size,
                   "model/params": size, "model/macs": 10 * size, "model/name": "tinytracker",
                   "data/name": "synthetic", **(extra or {})}
        (run / "metrics.json").write_text(json.dumps(metrics))
    return run


# width -> (size, {seed: test error}); values exact in binary so equal means are equal floats
SEED_SWEEP = {
    0.35: (50_000, {0: 2.5}),                          # F: single seed
    0.5: (100_000, {0: 1.5, 1: 1.75, 2: 1.25}),        # A
    0.25: (100_000, {0: 1.0, 1: 1.5, 2: 2.0}),         # D: ties A (same mean, same size)
    0.75: (300_000, {0: 1.25, 1: 1.375}),              # E: seed 2 crashed
    0.9: (350_000, {0: 1.0, 1: 1.625, 2: 1.625}),      # G: one run beats E, its mean does not
    1.0: (400_000, {0: 1.0, 1: 1.25, 2: 1.125}),       # B
}


def _seed_sweep(sweep: Path) -> tuple[dict[float, list[str]], Path]:
    """The jobs of a 3-seed multirun (seed-major, as Hydra numbers them); returns the run
    names of each width, and the crashed run's directory."""
    names: dict[float, list[str]] = {w: [] for w in SEED_SWEEP}
    job, crashed = 0, None
    for seed in (0, 1, 2):
        for width, (size, errors) in SEED_SWEEP.items():
            if seed in errors or width == 0.75:  # E's seed 2 ran and crashed
                run = _seed_run(sweep, job, seed, width, errors.get(seed), size)
                if seed in errors:
                    names[width].append(str(job))
                else:
                    crashed = run.resolve()
                job += 1
    return names, crashed


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1), written out here rather than with the code's statistics."""
    m = sum(values) / len(values)
    return m, (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def test_runs_that_differ_only_by_seed_are_one_configuration(tmp_path):
    from tinytracker.report.runs import load_runs
    from tinytracker.report.seeds import group_by_seed

    sweep = tmp_path / "sweep"
    names, crashed = _seed_sweep(sweep)
    runs = load_runs(str(sweep), "test/error_cm", "model/size_int8_bytes")
    assert [s.source for s in runs.skipped] == [str(crashed)]
    assert "no metrics.json" in runs.skipped[0].reason

    configs = group_by_seed(runs.results)
    # tags, logger.wandb.name and the job folder differ in every run: still one configuration
    # per width, in the order their first run was found (sorted folder names, as today)
    assert [c.runs[0].config["model.net.width_mult"] for c in configs] == [0.35, 0.5, 0.25,
                                                                            0.75, 0.9, 1.0]
    for config in configs:
        width = config.runs[0].config["model.net.width_mult"]
        assert sorted(r.name for r in config.runs) == sorted(names[width])
        errors = SEED_SWEEP[width][1]
        assert config.seeds == list(errors)
        stat = config.stat("test/error_cm")
        assert stat.n == len(errors)
        if len(errors) == 1:
            assert stat.mean == errors[0] and stat.std is None  # no std, never 0
        else:
            mean, std = _mean_std(list(errors.values()))
            assert stat.mean == pytest.approx(mean, abs=1e-12)
            assert stat.std == pytest.approx(std, abs=1e-12) and stat.std > 0


def test_a_changed_setting_is_another_configuration(tmp_path):
    from tinytracker.report.runs import load_runs
    from tinytracker.report.seeds import defines_configuration, group_by_seed

    sweep = tmp_path / "sweep"
    for job, seed in enumerate((0, 1)):
        _seed_run(sweep, job, seed, 0.5, 1.5 + job, 100_000)
    run = _seed_run(sweep, 2, 2, 0.5, 1.0, 100_000)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    config["data"]["synthetic"]["subjects"] = 240  # other data: not the same configuration
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    configs = group_by_seed(load_runs(str(sweep), "test/error_cm",
                                      "model/size_int8_bytes").results)
    assert [[r.name for r in c.runs] for c in configs] == [["0", "1"], ["2"]]
    assert not defines_configuration("logger.wandb.name")
    assert not defines_configuration("seed") and not defines_configuration("data.seed")
    assert defines_configuration("data.synthetic.seed")  # the data's seed is its content
    assert defines_configuration("seeds")  # prefixes match whole keys only


def _table_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split(" | ")]
            for ln in md.splitlines() if ln.startswith("| ") and ln[2].isdigit()]


def test_seed_report_means_marks_and_front_on_means(tmp_path):
    sweep = tmp_path / "sweep"
    names, crashed = _seed_sweep(sweep)
    out = tmp_path / "report"
    proc = run_module("tinytracker.report", f"runs={sweep}", f"out_dir={out}")
    assert f"skipped {crashed}: no metrics.json" in proc.stderr

    md = (out / "pareto.md").read_text()
    assert "5 Pareto-optimal of 6 configurations (15 runs;" in md
    rows = _table_rows(md)
    header = next(ln for ln in md.splitlines() if ln.startswith("| # |"))
    assert header.startswith("| # | runs | seeds | error (cm) | INT8 size (KB) |")
    by_width = {" ".join(n): w for w, n in names.items()}
    # front of the means, least size first; the tie (A, D: same size, same mean) in the
    # order found; G is off it although its seed-0 run (350 KB, 1.0 cm) beats E's means
    assert [by_width[r[1]] for r in rows] == [0.35, 0.5, 0.25, 0.75, 1.0]
    cells = {by_width[r[1]]: r for r in rows}
    for width in (0.5, 0.25, 1.0):
        mean, std = _mean_std(list(SEED_SWEEP[width][1].values()))
        assert cells[width][2] == "0,1,2"
        assert cells[width][3] == f"{mean:.3f} ± {std:.3f} (3)"
        assert cells[width][4] == f"{SEED_SWEEP[width][0] / 1024:.1f}"  # same for every seed
    mean, std = _mean_std([1.25, 1.375])
    assert cells[0.75][2] == "0,1 (n=2 of 3; missing 2)"
    assert cells[0.75][3] == f"{mean:.3f} ± {std:.3f} (2 of 3)"
    assert cells[0.35][2] == "0 (n=1 of 3; missing 1,2)"
    assert cells[0.35][3] == "2.500 ± — (1 of 3)"
    assert all("seed=" not in r[-1] for r in rows)  # the seeds column says it
    assert f"`{crashed}`: no metrics.json" in md

    with (out / "configs.csv").open() as f:
        configs = {r["config"]: r for r in csv.DictReader(f)}
    b = configs[" ".join(names[1.0])]
    mean, std = _mean_std([1.0, 1.25, 1.125])
    assert float(b["error_cm mean"]) == pytest.approx(mean, abs=1e-12)
    assert float(b["error_cm std"]) == pytest.approx(std, abs=1e-12)
    assert (b["error_cm n"], b["seeds"], b["pareto"]) == ("3", "0 1 2", "True")
    single = configs[" ".join(names[0.35])]
    assert (single["error_cm std"], single["missing_seeds"]) == ("", "1 2")  # no std, not 0
    assert configs[" ".join(names[0.9])]["pareto"] == "False"
    with (out / "runs.csv").open() as f:
        per_run = list(csv.DictReader(f))
    assert len(per_run) == 15 and {r["config"] for r in per_run} == set(configs)
    assert matplotlib.image.imread(out / "pareto.png").shape[0] > 500


def test_ablation_table_reads_qat_and_export_numbers(tmp_path):
    """table=ablation: float, QAT and IMX500-bound error, params, MACs, IMX500 memory; the
    exports found by their checkpoint (elsewhere) or by where they lie (inside the run)."""
    sweep, exports = tmp_path / "sweep", tmp_path / "exports"
    float_err = {"input": [1.0, 1.25, 1.5], "late": [1.25, 1.5, 1.75]}
    job = 0
    for seed in (0, 1, 2):
        for width, position in ((1.0, "input"), (0.5, "late")):
            qat = {"quant/mode": "qat", "test/error_cm_float_reference": float_err[position][seed]}
            run = _seed_run(sweep, job, seed, width, float_err[position][seed] + 0.0625,
                            200_000, qat)
            if position == "input" or seed < 2:  # late's seed 2 was not exported
                where = run / "export" if seed == 0 else exports / str(job)
                where.mkdir(parents=True)
                (where / "export.json").write_text(json.dumps({
                    "format": "imx500", "checkpoint": str(run / "checkpoints" / "best.ckpt"),
                    "test/error_cm": float_err[position][seed] + 0.125,
                    "imx500/emulated_test_error_cm": float_err[position][seed] + 0.1875,
                    "imx500/memory_usage_bytes": 512 * 1024 * (2 if position == "input" else 1)}))
            job += 1
    out = tmp_path / "report"
    # runs= the folder holding the sweep and the exports made elsewhere
    proc = run_module("tinytracker.report", f"runs={tmp_path}", f"out_dir={out}", "table=ablation")
    md = (out / "ablation.md").read_text()
    assert md in proc.stdout  # the table the command prints
    header = next(ln for ln in md.splitlines() if ln.startswith("| # |"))
    assert header == ("| # | runs | seeds | float error (cm) | QAT INT8 error (cm) | "
                      "IMX500 MCT error (cm) | emulated camera error (cm) | params | MACs | "
                      "IMX500 memory (KB) | model | "
                      "overrides |")
    rows = _table_rows(md)
    assert [r[1] for r in rows] == ["0 2 4", "1 3 5"]  # by float error: input first
    mean, std = _mean_std(float_err["input"])
    assert rows[0][3:10] == [f"{mean:.3f} ± {std:.3f} (3)",
                              f"{mean + 0.0625:.3f} ± {std:.3f} (3)",
                              f"{mean + 0.125:.3f} ± {std:.3f} (3)",
                              f"{mean + 0.1875:.3f} ± {std:.3f} (3)",
                              "200.00k", "2.00M", "1024.0"]
    mean, std = _mean_std(float_err["late"][:2])
    assert rows[1][5] == f"{mean + 0.125:.3f} ± {std:.3f} (2 of 3)"  # one seed not exported
    assert rows[1][6] == f"{mean + 0.1875:.3f} ± {std:.3f} (2 of 3)"
    assert rows[1][7:10] == ["200.00k", "2.00M", "512.0 (2 of 3)"]  # every run has params
    assert (out / "pareto.md").is_file()


def test_report_columns_option_and_missing_values(tmp_path):
    sweep = tmp_path / "sweep"
    for job, seed in enumerate((0, 1)):
        _seed_run(sweep, job, seed, 0.5, 1.5, 100_000, {"val/error_cm": 2.0 + seed})
    _seed_run(sweep, 2, 0, 1.0, 1.25, 400_000)
    out = tmp_path / "report"
    run_module("tinytracker.report", f"runs={sweep}", f"out_dir={out}",
               "columns=[val/error_cm,model/params,export/onnx/test/error_cm]")
    md = (out / "pareto.md").read_text()
    assert "| val/error_cm | model/params | export/onnx/test/error_cm | model |" in md
    rows = {r[1]: r for r in _table_rows(md)}
    _, std = _mean_std([2.0, 3.0])
    assert rows["0 1"][3:6] == [f"2.500 ± {std:.3f} (2)", "100.00k", "—"]
    assert rows["2"][3] == "—"  # no val/error_cm in that run
    with (out / "configs.csv").open() as f:
        head = next(csv.reader(f))
    assert head[5:8] == ["error_cm mean", "error_cm std", "error_cm n"]
    assert "val/error_cm mean" in head
    proc = run_module("tinytracker.report", f"runs={sweep}", f"out_dir={out}", "table=nope",
                      check=False)
    assert proc.returncode == 1 and "table=nope: expected one of pareto, ablation" in proc.stderr
