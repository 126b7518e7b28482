"""Shared fixtures: a private dataset cache, the quick tier's trained models, and helpers to
run the real entry points.

Tiers: ``pytest -m "not slow"`` (a few minutes; every package, models trained once per session
by ``float_run`` and ``qat_run``, config errors composed in-process) and the full suite (what
CI runs: adds the end-to-end runs marked ``slow``). Every test has a timeout (pyproject).
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from tinytracker.locations import anchors_dir

REPO = Path(__file__).resolve().parents[1]
SCIKIT_IMAGE = "pip install -e '.[test]' (scikit-image, the test photographs)"
# The authors' released models: $TINYTRACKER_ANCHORS, else ../shared/anchors beside the repo.
ANCHORS = anchors_dir()

# A small synthetic set keeps end-to-end tests fast while using every real code path.
SMALL_DATA = [
    "data.synthetic.subjects=6",
    "data.synthetic.frames_per_subject=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
]


def missing_install(what: str) -> NoReturn:
    """Skip a test whose install step was not run, saying what is missing; under ``CI=true``
    fail instead, because CI runs every install step and a skip would hide a broken one."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true, but {what}", pytrace=False)
    pytest.skip(what, allow_module_level=True)


def import_or_missing(module: str, install: str) -> ModuleType:
    """``pytest.importorskip`` that fails under CI (``missing_install``)."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing_install(f"{module} cannot be imported ({err}); install it with {install}")


def anchor_file(name: str) -> Path:
    """One of the authors' model files, or ``missing_install`` naming where it was looked for."""
    path = ANCHORS / name
    if not path.is_file():
        missing_install(f"the authors' {name} is not in {ANCHORS} (set $TINYTRACKER_ANCHORS "
                        "to the folder that holds the authors' models)")
    return path


@pytest.fixture(scope="session")
def imx500_converter() -> Path:
    """Sony's ``imxconv-pt`` (``find_converter``), or ``missing_install`` saying how to make it."""
    from tinytracker.export.errors import ExportError
    from tinytracker.export.imxconv import find_converter

    try:
        return find_converter()
    except ExportError as err:
        missing_install(f"Sony's IMX500 converter is not installed: {err}")


@pytest.fixture(scope="session")
def litert_python() -> Path:
    """The LiteRT environment's python (``find_litert_python``: litert-torch and TFLite
    Micro), or ``missing_install`` saying how to make it."""
    from tinytracker.export.errors import ExportError
    from tinytracker.export.litert_env import find_litert_python

    try:
        return find_litert_python()
    except ExportError as err:
        missing_install(f"the LiteRT environment is not installed: {err}")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One dataset cache per test session, so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("tinytracker-cache")
    os.environ["TINYTRACKER_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's in-process work on one torch thread, restoring the count after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
               check: bool = True, timeout: float = 900,
               python: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` as a user would, returning the completed process
    (``python``: another environment's interpreter; default: this one)."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [str(python or sys.executable), "-m", module, *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def compose_config(name: str, *overrides: str, out_dir: Path | None = None) -> DictConfig:
    """The config ``python -m tinytracker.<name> overrides...`` runs with, composed in-process
    from the package's tree (Hydra's compose API); ``out_dir`` also stands in for the run
    directory Hydra would create."""
    where = [f"out_dir={out_dir}", f"paths.output_dir={out_dir}"] if out_dir else []
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        return compose(name, overrides=[*where, f"paths.root_dir={REPO}", *overrides])


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def train_in_process(out_dir: Path, *overrides: str) -> dict:
    """``python -m tinytracker.train overrides...`` without a new process: the same composed
    config through the command's own ``train`` (which writes ``out_dir/metrics.json``)."""
    from tinytracker.train import train

    # one thread, as the subprocess runs had (OMP_NUM_THREADS=1): on 2 shared cores, two
    # spinning OpenMP threads next to other jobs thrash
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(compose_config("train", *overrides, out_dir=out_dir))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def float_run(tmp_path_factory, cache_dir) -> dict:
    """The quick tests' one float checkpoint (its ``metrics.json``): TinyTracker at 64 px with
    the grid embedding, 4 short epochs on SMALL_DATA. Four, because after two steps batch-norm
    statistics have not settled and the outputs are the same for every frame, and any fit on
    them (calibration) would fit rounding."""
    out = tmp_path_factory.mktemp("float-run")
    train_in_process(out, *SMALL_DATA, "trainer.max_epochs=4", "logger=none",
                     "data.face_size=64", "model.position=input")
    return read_metrics(out)


@pytest.fixture(scope="session")
def qat_run(tmp_path_factory, cache_dir) -> Path:
    """The quick tests' one QAT run (its folder): the default TinyTracker (112 px), 2 float
    epochs then 2 QAT epochs on SMALL_DATA. Its float phase's checkpoint
    (``quant/float_checkpoint``) is the quick tests' float checkpoint of the default config."""
    out = tmp_path_factory.mktemp("qat-run")
    train_in_process(out, "+experiment=qat", *SMALL_DATA, "quant.float_epochs=2",
                     "quant.epochs=2", "quant.calibration_batches=4", "logger=csv")
    return out


def kill_once_loadable(proc: subprocess.Popen, ckpt: Path, timeout_s: float = 600) -> None:
    """SIGKILL ``proc`` as soon as ``ckpt`` is a whole checkpoint (it loads): the run is then
    past its first epoch and in the next. Polls the file, no sleep that races."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended before {ckpt} was written:\n{proc.stdout.read()}")
        try:
            torch.load(ckpt, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
            time.sleep(0.01)
            continue
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{ckpt} was not written within {timeout_s} s")
