"""The package as a user installs it from a wheel: no repository around it.

The wheel is built from a copy of the sources and installed with ``--no-deps`` into a fresh
virtual environment outside the repository; the dependencies come from the test's own
environment through a ``.pth`` file, so the test stays offline and fast. That ``.pth`` names a
plain path, and Python runs ``.pth`` files only in site directories, so the editable install's
finder there is never activated: the wheel's ``tinytracker`` is the one imported (checked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SMALL_DATA, read_metrics, run_module

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _build_wheel(work: Path) -> Path:
    """``pip wheel`` of a copy of the sources (pip builds in place: no build/ in the repo)."""
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "tinytracker", src / "tinytracker",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", str(src), "-w", str(work / "dist")],
                   check=True, capture_output=True, text=True, timeout=300)
    (wheel,) = (work / "dist").glob("tinytracker-*.whl")
    return wheel


def _venv_with(wheel: Path, where: Path) -> Path:
    """A fresh venv holding only the wheel; the dependencies are this environment's."""
    venv.create(where, with_pip=False)
    python = where / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                    "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "test-dependencies.pth").write_text("\n".join(sorted(deps)) + "\n")
    return python


@pytest.fixture(scope="module")
def wheel_python(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel venv's python, the wheel)."""
    work = tmp_path_factory.mktemp("wheel")
    assert REPO not in work.parents, "the venv must live outside the repository"
    wheel = _build_wheel(work)
    return _venv_with(wheel, work / "venv"), wheel


def test_wheel_holds_every_config(wheel_python):
    _, wheel = wheel_python
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {str(p.relative_to(REPO)) for p in (REPO / "tinytracker" / "conf").rglob("*.yaml")}
    assert len(configs) > 20 and "tinytracker/conf/train.yaml" in configs
    assert configs <= names, f"the wheel lacks {sorted(configs - names)[:5]}"


CLEAN_ENV = {"PYTHONPATH": "", "PYTHONNOUSERSITE": "1"}  # nothing may lead back to the repo


def test_installed_wheel_runs_from_another_directory(wheel_python, tmp_path, cache_dir):
    python, _ = wheel_python
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [str(python), "-c", "import tinytracker, tinytracker.locations as loc; "
         "print(tinytracker.__file__); print(loc.source_checkout())"],
        cwd=elsewhere, env={**os.environ, **CLEAN_ENV}, check=True, capture_output=True,
        text=True)
    module_file, checkout = where.stdout.split()
    assert Path(module_file).is_relative_to(python.parents[1]), module_file  # not the repo's
    assert checkout == "None"

    job = run_module("tinytracker.train", "--cfg", "job", cwd=elsewhere, env=CLEAN_ENV,
                     python=python)
    assert "task_name: train" in job.stdout and "_target_: tinytracker." in job.stdout

    out = tmp_path / "run"
    run_module("tinytracker.train", "trainer.fast_dev_run=true", *SMALL_DATA, "logger=csv",
               f"out_dir={out}", cwd=elsewhere, env=CLEAN_ENV, python=python)
    metrics = read_metrics(out)
    assert metrics["model/name"] == "tinytracker" and metrics["test/error_cm"] > 0
    # no repository around an installed wheel: the run says so instead of failing
    assert metrics["git/commit"] is None and metrics["git/dirty"] is None
