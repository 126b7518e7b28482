"""Distributed runs (Lightning DDP under Hydra): the launch check and per-process log files.

Lightning's ``ddp`` strategy starts the other processes of a node by re-running the command
line (``python -m tinytracker.train ...``) with ``hydra.run.dir`` set to the first process's
run directory, so every rank writes into one run directory; only rank 0 writes
``metrics.json``, checkpoints and the W&B run. Under SLURM (``hydra/launcher=slurm``), ``srun``
starts one process per device instead and Lightning's ``SLURMEnvironment`` reads the ranks.
"""

from __future__ import annotations

import os

import lightning as L

from tinytracker.config import ConfigError


def check_launch(trainer: L.Trainer) -> None:
    """Refuse the one DDP set-up that cannot work: Lightning's launcher in a ``-m`` sweep.

    Re-running the command line of a sweep would re-run the whole sweep in each child process
    (Lightning-AI/pytorch-lightning#11300), so a sweep needs processes started by the cluster.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher) or launcher.num_processes <= 1:
        return
    if launcher.cluster_environment.creates_processes_externally:  # srun or torchrun did
        return
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            f"trainer.devices={launcher.num_processes} with DDP inside a -m sweep: Lightning "
            "starts the other processes by re-running the command line, which would re-run "
            "the sweep in each of them. Run each trial without -m, or sweep with "
            "hydra/launcher=slurm, where SLURM starts one process per device "
            "(hydra.launcher.tasks_per_node = trainer.devices)."
        )


def process_log_suffix() -> str:
    """``""`` for the main process, else ``_rank<N>``: each DDP process logs to its own file.

    Read from the environment that the launcher (Lightning, SLURM, torchrun) sets before the
    process starts, because Hydra opens the log file before Lightning knows the ranks.
    """
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            rank = int(os.environ[var])
            return f"_rank{rank}" if rank else ""
    local, node = int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("NODE_RANK", 0))
    if node:
        return f"_node{node}_rank{local}"
    return f"_rank{local}" if local else ""
