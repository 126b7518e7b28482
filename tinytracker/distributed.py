"""Distributed runs (Lightning DDP under Hydra): per-process log files.

Lightning's ``ddp`` strategy starts the other processes of a node by re-running the command
line (``python -m tinytracker.train ...``) with ``hydra.run.dir`` set to the first process's
run directory, so every rank writes into one run directory; only rank 0 writes
``metrics.json``, checkpoints and the W&B run. Under SLURM (``hydra/launcher=slurm``), ``srun``
starts one process per device instead and Lightning's ``SLURMEnvironment`` reads the ranks.
The check that refuses a launch which cannot work is :func:`tinytracker.config.check_launch`.
"""

from __future__ import annotations

import os


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
