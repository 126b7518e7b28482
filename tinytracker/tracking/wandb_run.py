"""W&B: start a run (offline when online fails), mirror final numbers into its summary,
attach the checkpoint, and add an export's numbers and files to the training run later."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinytracker.tracking.summary_files import jsonable

log = logging.getLogger(__name__)


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


def resume_wandb_run(loggers: list, ckpt_path: str | os.PathLike | None,
                     run_dir: str | os.PathLike) -> str | None:
    """Resuming from a checkpoint of this same run directory continues its W&B run (by id,
    ``resume="allow"``) instead of starting a second one; call before :func:`start_wandb`.
    Returns the id continued, or None (no checkpoint, another run's, or no W&B run)."""
    if not ckpt_path:
        return None
    if Path(ckpt_path).resolve().parent.parent != Path(run_dir).resolve():
        return None  # fine-tuning from another run's checkpoint starts a run of its own
    ref = checkpoint_wandb_run(ckpt_path)
    if ref is None:
        return None
    for lg in wandb_loggers(loggers):
        lg._wandb_init.update(id=ref.run_id, resume="allow")
        lg._id = ref.run_id
        log.info("resuming W&B run %s of %s", ref.run_id, run_dir)
    return ref.run_id


def log_summary(loggers: list, metrics: dict[str, Any]) -> None:
    """Put final numbers into every W&B run's summary (what W&B tables and sweeps show)."""
    for lg in wandb_loggers(loggers):
        run = lg.experiment
        for key, value in metrics.items():
            run.summary[key] = jsonable(value)


def wandb_run_locations(loggers: list) -> list[str]:
    """Where each W&B run is: its URL online; offline, its local directory and how to upload it."""
    places = []
    for lg in wandb_loggers(loggers):
        run = lg.experiment
        if getattr(run, "offline", False):
            run_dir = Path(run.dir).parent
            places.append(f"{run_dir} (offline; upload with: wandb sync {run_dir})")
        else:
            places.append(str(getattr(run, "url", None) or Path(run.dir).parent))
    return places


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
            run.summary[key] = jsonable(value)
        art = wandb.Artifact(artifact_name, type=artifact_type,
                             metadata={k: jsonable(v) for k, v in summary.items()})
        for path in files:
            art.add_file(str(path), name=Path(path).name)
        run.log_artifact(art)
        return Path(run.dir).parent
    finally:
        run.finish()
