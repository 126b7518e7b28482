"""Run results: ``metrics.json`` in the run directory, mirrored into the W&B summary.

``metrics.json`` is flat with ``/``-separated keys (``test/error_cm``, ``model/params``...);
later stages (QAT, export, sweeps, reports) extend and read it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> Path:
    """Write (or extend) a flat ``metrics.json``; keys already there are updated, not lost."""
    path = Path(path)
    current: dict[str, Any] = {}
    if path.is_file():
        current = json.loads(path.read_text())
    current.update({k: _jsonable(v) for k, v in metrics.items()})
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return str(value)
    return value


def wandb_loggers(loggers: list) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [lg for lg in loggers if isinstance(lg, WandbLogger)]


def start_wandb(loggers: list) -> None:
    """Start each W&B run now; if online mode cannot reach W&B, continue offline.

    An online run without network or credentials must not hang or fail training: W&B's own
    error is logged and the run is recreated in offline mode (sync it later with
    ``wandb sync``).
    """
    for lg in wandb_loggers(loggers):
        if lg._wandb_init.get("mode") == "offline":
            _ = lg.experiment
            continue
        lg._wandb_init.setdefault("settings", {"init_timeout": 30})
        try:
            _ = lg.experiment
        except Exception as err:  # wandb raises many types (auth, network, timeout)
            log.warning("W&B online mode failed (%s); logging offline instead", err)
            lg._wandb_init["mode"] = "offline"
            lg._experiment = None
            _ = lg.experiment


def log_summary(loggers: list, metrics: dict[str, Any]) -> None:
    """Put final numbers into every W&B run's summary (what W&B tables and sweeps show)."""
    for lg in wandb_loggers(loggers):
        run = lg.experiment
        for key, value in metrics.items():
            run.summary[key] = _jsonable(value)


def log_checkpoint_artifact(loggers: list, ckpt_path: str | None, name: str) -> None:
    """Attach the best checkpoint to the W&B run as a model artifact."""
    if not ckpt_path or not Path(ckpt_path).is_file():
        return
    import wandb

    for lg in wandb_loggers(loggers):
        run = lg.experiment
        art = wandb.Artifact(f"model-{run.id}", type="model", metadata={"model": name})
        art.add_file(str(ckpt_path), name=Path(ckpt_path).name)
        run.log_artifact(art, aliases=["best"])


@dataclass(frozen=True)
class WandbRunRef:
    """Where a finished W&B run lives: enough to add to it later (export numbers, files)."""

    run_id: str
    project: str
    entity: str | None = None


def checkpoint_wandb_run(ckpt_path: str | os.PathLike) -> WandbRunRef | None:
    """The W&B run of the training run that wrote ``<run>/checkpoints/<file>.ckpt``.

    Found from the run directory's ``wandb/{offline-run,run}-<date>_<time>-<id>/`` and its
    ``.hydra/config.yaml`` (project, entity); ``None`` when the run logged no W&B run.
    """
    run_dir = Path(ckpt_path).resolve().parent.parent
    runs = sorted(p for p in (run_dir / "wandb").glob("*run-*-*") if p.is_dir()
                  and p.name.startswith(("offline-run-", "run-")))
    if not runs:
        return None
    project, entity = "tinytracker", None
    config = run_dir / ".hydra" / "config.yaml"
    if config.is_file():
        from omegaconf import OmegaConf

        wandb_cfg = OmegaConf.select(OmegaConf.load(config), "logger.wandb") or {}
        project = str(wandb_cfg.get("project") or project)
        entity = wandb_cfg.get("entity") or None
    return WandbRunRef(runs[-1].name.rsplit("-", 1)[-1], project, entity)


def log_to_wandb_run(ref: WandbRunRef, save_dir: str | os.PathLike, mode: str,
                     summary: dict[str, Any], files: list[Path], artifact_name: str,
                     artifact_type: str = "model", job_type: str = "export") -> Path:
    """Add ``summary`` and an artifact of ``files`` to the existing run ``ref``.

    The run is resumed by id (``resume="allow"``); its files go under ``save_dir``, so the
    training run's directory is never written to. An offline resume is merged into the same
    run when synced (``wandb sync <save_dir>/wandb/offline-run-*``). Online without network or
    credentials falls back to offline, as training does. Returns the local run directory.
    """
    import wandb

    kwargs: dict[str, Any] = dict(id=ref.run_id, project=ref.project, entity=ref.entity,
                                  dir=str(save_dir), resume="allow", job_type=job_type,
                                  reinit="finish_previous")
    try:
        run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=30), **kwargs)
    except Exception as err:  # wandb raises many types (auth, network, timeout)
        if mode == "offline":
            raise
        log.warning("W&B online mode failed (%s); logging offline instead", err)
        run = wandb.init(mode="offline", **kwargs)
    try:
        for key, value in summary.items():
            run.summary[key] = _jsonable(value)
        art = wandb.Artifact(artifact_name, type=artifact_type,
                             metadata={k: _jsonable(v) for k, v in summary.items()})
        for path in files:
            art.add_file(str(path), name=Path(path).name)
        run.log_artifact(art)
        return Path(run.dir).parent
    finally:
        run.finish()


# W&B offline runs keep everything in the binary ``run-<id>.wandb`` log (no
# wandb-summary.json is written offline). It is a LevelDB-style log of ``Record`` protobufs:
# a 7-byte file header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each
# with a 7-byte header (crc32, uint16 length, uint8 type: 1 full, 2 first, 3 middle, 4 last).
_WANDB_HEADER = 7
_WANDB_BLOCK = 32768


def read_wandb_records(path: str | os.PathLike):
    """Yield the ``wandb_internal_pb2.Record`` messages of an offline ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log (missing ':W&B' header)")
    pos, pending = _WANDB_HEADER, b""
    while pos + _WANDB_HEADER <= len(data):
        room = _WANDB_BLOCK - pos % _WANDB_BLOCK
        if room < _WANDB_HEADER:  # block trailer padding
            pos += room
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + _WANDB_HEADER : pos + _WANDB_HEADER + length]
        pos += _WANDB_HEADER + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def read_wandb_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Final summary of a W&B run directory (offline or online), from its ``.wandb`` log."""
    files = sorted(Path(run_dir).glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb log in {run_dir}")
    summary: dict[str, Any] = {}
    history: dict[str, Any] = {}  # W&B's summary defaults to each metric's last logged value
    for record in read_wandb_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                summary[key] = json.loads(item.value_json)
            for item in record.summary.remove:
                summary.pop("/".join(item.nested_key) if item.nested_key else item.key, None)
        elif kind == "history":
            for item in record.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                if not key.startswith("_"):
                    history[key] = json.loads(item.value_json)
    return {**history, **summary}


def read_wandb_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The config a W&B run logged (top-level keys), from its ``.wandb`` log."""
    files = sorted(Path(run_dir).glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb log in {run_dir}")
    config: dict[str, Any] = {}
    for record in read_wandb_records(files[0]):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                config[key] = json.loads(item.value_json)
    return config
