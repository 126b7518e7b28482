"""Shared fixtures: a private dataset cache and helpers to run the real entry points."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
ANCHORS = REPO.parent / "shared" / "anchors"

# A small synthetic set keeps end-to-end tests fast while using every real code path.
SMALL_DATA = [
    "data.synthetic.subjects=6",
    "data.synthetic.frames_per_subject=16",
    "data.batch_size=8",
    "data.eval_batch_size=16",
]


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
               check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m <module> args...`` as a user would, returning the completed process."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
                "PYTHONUNBUFFERED": "1", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"python -m {module} {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"
        )
    return proc


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())
