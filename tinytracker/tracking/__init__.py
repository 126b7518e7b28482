"""Where a run's results go: flat JSON files in its directory (:mod:`.summary_files`:
``metrics.json`` and other summaries), its checkpoints (:mod:`.checkpoints`) and W&B
(:mod:`.wandb_run`)."""

from tinytracker.tracking.checkpoints import AtomicCheckpointIO, LastEpochCheckpoint
from tinytracker.tracking.provenance import git_state
from tinytracker.tracking.run_summary import format_run_summary
from tinytracker.tracking.summary_files import METRICS_FILE, update_json_summary, write_metrics
from tinytracker.tracking.wandb_run import (
    WandbRunRef,
    checkpoint_wandb_run,
    log_checkpoint_artifact,
    log_summary,
    log_to_wandb_run,
    resume_wandb_run,
    start_wandb,
    wandb_loggers,
    wandb_run_locations,
)

__all__ = [
    "METRICS_FILE",
    "AtomicCheckpointIO",
    "LastEpochCheckpoint",
    "WandbRunRef",
    "checkpoint_wandb_run",
    "format_run_summary",
    "git_state",
    "log_checkpoint_artifact",
    "log_summary",
    "log_to_wandb_run",
    "resume_wandb_run",
    "start_wandb",
    "update_json_summary",
    "wandb_loggers",
    "wandb_run_locations",
    "write_metrics",
]
