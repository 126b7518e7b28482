"""Data-path benchmark: ``python -m tinytracker.data.bench [data=...] [+experiment=...]``.

The training split's loader rate per CPU core (:func:`tinytracker.data.throughput.loader_rate`,
the measurement ``python -m tinytracker.benchmark`` reports too) through the JPEG path and the
packed path of the same data, with the training augmentation on and off, and the packed/JPEG
speed-ups. Both paths read from a warm page cache, so the JPEG numbers are a best case for
JPEG: from network storage it is slower still.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinytracker.config import build_net, register_resolvers
from tinytracker.data.datamodule import FORMATS
from tinytracker.data.throughput import loader_rate
from tinytracker.tracking import update_json_summary

log = logging.getLogger(__name__)
register_resolvers()


def benchmark_data_paths(data_cfg: DictConfig, input_keys: tuple[str, ...], samples: int,
                         rounds: int = 3) -> dict[str, Any]:
    """Flat ``bench/<format>/augment_<on|off>/...`` results and the packed/JPEG speed-ups."""
    out: dict[str, Any] = {"bench/load_avg_1min_start": os.getloadavg()[0],
                           "bench/cpu_count": os.cpu_count(), "bench/rounds": rounds}
    base = OmegaConf.to_container(data_cfg, resolve=True)
    for fmt, augment in itertools.product(FORMATS, (False, True)):
        cfg = OmegaConf.create(base)
        cfg.format, cfg.num_workers = fmt, 0
        cfg.augment.enabled = augment
        dm = instantiate(cfg, _convert_="all")
        dm.set_inputs(input_keys)
        dm.prepare_data()  # packing (once) is not timed
        dm.setup("fit")
        key = f"bench/{fmt}/augment_{'on' if augment else 'off'}"
        rate = loader_rate(dm.datasets["train"], samples, rounds, int(cfg.batch_size))
        out.update({f"{key}/{k}": v for k, v in rate.items()})
        log.info("%-28s %8.0f samples/s per core (%.0f wall)", key,
                 rate["samples_per_s_per_core"], rate["samples_per_s_wall"])
    for aug in ("off", "on"):
        rate = {f: out[f"bench/{f}/augment_{aug}/samples_per_s_per_core"] for f in FORMATS}
        out[f"bench/speedup_packed_over_jpeg/augment_{aug}"] = rate["packed"] / rate["jpeg"]
    out["bench/load_avg_1min_end"] = os.getloadavg()[0]
    return out


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="bench")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    net = build_net(OmegaConf.to_container(cfg.model.net, resolve=True))
    results = benchmark_data_paths(cfg.data, tuple(net.input_keys),
                                   int(cfg.batches) * int(cfg.data.batch_size), cfg.rounds)
    results["bench/model"] = cfg.model.name
    results["bench/batch_size"] = cfg.data.batch_size
    out = Path(HydraConfig.get().runtime.output_dir) / "bench.json"
    update_json_summary(out, results)
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
