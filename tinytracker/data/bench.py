"""Data-path benchmark: ``python -m tinytracker.data.bench [data=...] [+experiment=...]``.

Loads training batches through the JPEG path and the packed path of the same data, with the
training augmentation on and off, and reports samples per second per CPU core: one process,
one torch and OpenCV thread, ``num_workers=0``, so the rate is that of one core (a DataLoader
with N workers on N free cores scales it by about N). The rate is counted against the
process's CPU time, which a busy machine inflates less than wall time (both are reported),
and each case keeps the best of ``rounds`` interleaved rounds.
Both paths read from a warm page cache (the first pass is not timed), so the JPEG numbers are
a best case for JPEG: from network storage it is slower still.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinytracker.config import build_net, register_resolvers
from tinytracker.tracking import write_metrics

log = logging.getLogger(__name__)
register_resolvers()

FORMATS = ("jpeg", "packed")


def _epochs(loader):
    """Batches of ``loader``, epoch after epoch (each epoch loads anew)."""
    while True:
        yield from loader


def _time_loader(datamodule, batches: int, warmup: int) -> dict[str, float]:
    it = _epochs(datamodule.train_dataloader())
    for _ in range(warmup):
        next(it)
    samples, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    for _ in range(batches):
        samples += len(next(it)["gaze_cm"])
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"samples": samples, "wall_s": wall, "cpu_s": cpu,
            "samples_per_s_per_core": samples / cpu, "samples_per_s_wall": samples / wall}


def benchmark_data_paths(data_cfg: DictConfig, input_keys: tuple[str, ...], batches: int = 40,
                         warmup: int = 3, rounds: int = 3) -> dict[str, Any]:
    """Flat ``bench/<format>/augment_<on|off>/...`` results and the packed/JPEG speed-ups.

    The four cases are timed in turn, ``rounds`` times, and each keeps its best round, so a
    burst of load from other processes hits every case alike and is discarded.
    """
    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    out: dict[str, Any] = {"bench/load_avg_1min_start": os.getloadavg()[0],
                           "bench/cpu_count": os.cpu_count(), "bench/rounds": rounds}
    try:
        cases = {}
        base = OmegaConf.to_container(data_cfg, resolve=True)
        for fmt, augment in itertools.product(FORMATS, (False, True)):
            cfg = OmegaConf.create(base)
            cfg.format, cfg.num_workers = fmt, 0
            cfg.augment.enabled = augment
            dm = instantiate(cfg, _convert_="all")
            dm.set_inputs(input_keys)
            dm.prepare_data()  # packing (once) is not timed
            dm.setup("fit")
            cases[f"bench/{fmt}/augment_{'on' if augment else 'off'}"] = dm
        for _ in range(rounds):
            for key, dm in cases.items():
                result = _time_loader(dm, batches, warmup)
                best = out.get(f"{key}/samples_per_s_per_core", 0.0)
                if result["samples_per_s_per_core"] > best:
                    out.update({f"{key}/{k}": v for k, v in result.items()})
        for key in cases:
            log.info("%-28s %8.0f samples/s per core (%.0f wall)", key,
                     out[f"{key}/samples_per_s_per_core"], out[f"{key}/samples_per_s_wall"])
    finally:
        torch.set_num_threads(threads)
        cv2.setNumThreads(cv_threads)
    for aug in ("off", "on"):
        rate = {f: out[f"bench/{f}/augment_{aug}/samples_per_s_per_core"] for f in FORMATS}
        out[f"bench/speedup_packed_over_jpeg/augment_{aug}"] = rate["packed"] / rate["jpeg"]
    out["bench/load_avg_1min_end"] = os.getloadavg()[0]
    return out


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    net = build_net(OmegaConf.to_container(cfg.model.net, resolve=True))
    results = benchmark_data_paths(cfg.data, tuple(net.input_keys), cfg.batches, cfg.warmup,
                                   cfg.rounds)
    results["bench/model"] = cfg.model.name
    results["bench/batch_size"] = cfg.data.batch_size
    out = Path(HydraConfig.get().runtime.output_dir) / "bench.json"
    write_metrics(out, results)
    print(f"\nsamples/s per CPU core, {cfg.model.name} inputs, batch {cfg.data.batch_size}, "
          f"best of {cfg.rounds} (load average {results['bench/load_avg_1min_start']:.2f} at "
          f"start, {results['bench/load_avg_1min_end']:.2f} at end):")
    print(f"{'augment':<8}{'jpeg':>10}{'packed':>10}{'speed-up':>10}")
    for aug in ("off", "on"):
        jpeg = results[f"bench/jpeg/augment_{aug}/samples_per_s_per_core"]
        packed = results[f"bench/packed/augment_{aug}/samples_per_s_per_core"]
        print(f"{aug:<8}{jpeg:>10.0f}{packed:>10.0f}{packed / jpeg:>9.1f}x")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
