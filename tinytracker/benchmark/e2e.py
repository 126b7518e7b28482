"""Wall time of the default ``python -m tinytracker.train`` by stage, from a cold cache.

The run is a real subprocess with no arguments but ``out_dir`` and a fresh data cache (so the
synthetic dataset is generated and prepared as on a new machine); its stages come from the
``time/...`` keys it writes to ``metrics.json``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("generate", "prepare", "train", "test")


def default_run(work_dir: Path, overrides: list[str] | None = None) -> dict[str, float]:
    """``overrides`` (none for the real figure) exist for a quick check of this code path."""
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir, log_path = work_dir / "run", work_dir / "train.log"
    env = {**os.environ, "TINYTRACKER_CACHE_DIR": str(work_dir / "cache")}
    t0 = time.perf_counter()
    with open(log_path, "w") as log_file:
        proc = subprocess.run([sys.executable, "-m", "tinytracker.train", f"out_dir={run_dir}",
                               *(overrides or [])],
                              env=env, stdout=log_file, stderr=subprocess.STDOUT)
    wall_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"the default training run failed (exit {proc.returncode}); "
                           f"see {log_path}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    out = {"e2e/default_run_s": wall_s,
           "e2e/test_error_cm": metrics["test/error_cm"],
           "e2e/mean_predictor_error_cm": metrics["baseline/mean_predictor_error_cm"],
           "e2e/error_over_mean_predictor": (metrics["test/error_cm"]
                                             / metrics["baseline/mean_predictor_error_cm"])}
    for stage in STAGES:
        out[f"e2e/{stage}_s"] = float(metrics[f"time/{stage}_s"])
    return out
