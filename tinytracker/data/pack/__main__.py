"""Pack a dataset: ``python -m tinytracker.data.pack [data=...] [+experiment=...] [force=true]``.

Writes the packed format (:mod:`tinytracker.data.packed`) of the configured data for the
configured model's inputs and sizes, and logs where it is and what it holds (also written to
``pack.json`` in the run directory). Training with
``data.format=packed`` builds the same pack on first use; running this first matters for
multi-GPU runs on large data, where the other ranks would otherwise wait for the packing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinytracker.atomic import WriteError
from tinytracker.config import build_net, register_resolvers
from tinytracker.data.packed import META_FILE
from tinytracker.data.processed import DataFormatError
from tinytracker.tracking import update_json_summary

log = logging.getLogger(__name__)
register_resolvers()


def pack(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Build (or find up to date) the pack of ``cfg.data`` for ``cfg.model``'s inputs; writes
    a summary to ``out_dir/pack.json``."""
    net = build_net(OmegaConf.to_container(cfg.model.net, resolve=True))
    datamodule = instantiate(cfg.data, _convert_="all")
    datamodule.set_inputs(net.input_keys)
    datamodule.prepare_processed()  # generate (synthetic) or prepare (raw) the data if needed
    path = datamodule.ensure_pack(datamodule.filtered_index(), force=bool(cfg.force))
    meta = json.loads((path / META_FILE).read_text())
    files = [f for f in Path(path).iterdir() if f.suffix == ".npy"]
    summary = {
        "pack": str(path),
        "fields": meta["fingerprint"]["fields"],
        "frames": {s: v["frames"] for s, v in meta["splits"].items()},
        "unreadable_frames": sum(len(v["bad_rows"]) for v in meta["splits"].values()),
        "shards": len(files),
        "size_bytes": sum(f.stat().st_size for f in files),
        "packed_s": meta.get("packed_s"),
    }
    for key, value in summary.items():
        log.info("%s: %s", key, value)
    update_json_summary(out_dir / "pack.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="pack")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    try:
        pack(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (DataFormatError, WriteError) as err:
        log.error("%s", err)
        raise SystemExit(f"pack failed: {err}") from err


if __name__ == "__main__":
    main()
