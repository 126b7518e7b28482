"""Config resolvers and early validation: fail before training, naming the offending key.

The lowest layer above the libraries: it imports no other tinytracker module but
:mod:`tinytracker.distributed` (the per-process log file name), so every command can use it.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from tinytracker.distributed import process_log_suffix

# The choices of model.position: how a net learns where the face is in the frame
# (tinytracker.models.regressor). Only ``input`` takes the grid embedding as an input.
POSITIONS = ("input", "none", "late", "frame")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


def _grid_embedding_for(position: Any) -> bool:
    # data.grid_embedding follows model.position: the channels are an input only for "input"
    return str(position) == "input"


def _channels(grey: Any) -> int:
    return 1 if bool(grey) else 3


def _wandb_default_mode() -> str:
    # A W&B sweep agent starts its runs with WANDB_SWEEP_ID set; their results must reach the
    # sweep, so they log online. Any other run stays offline unless WANDB_MODE says otherwise.
    return "online" if os.environ.get("WANDB_SWEEP_ID") else "offline"


DEBUG_TAG = "debug"


def run_tags(tags: Any, debug_run: Any = None) -> list[str]:
    """The tags a run is recorded with (W&B tags, metrics.json ``tags``): ``tags``, plus
    ``debug`` for a debug run (``debug=<name>``), so it is never read as a result."""
    names = [str(t) for t in (tags or [])]
    if debug_run is not None and DEBUG_TAG not in names:
        names.append(DEBUG_TAG)
    return names


def register_resolvers() -> None:
    """Resolvers used in ``conf/`` (idempotent)."""
    if not OmegaConf.has_resolver("channels"):
        OmegaConf.register_new_resolver("channels", _channels)
    if not OmegaConf.has_resolver("wandb_default_mode"):
        OmegaConf.register_new_resolver("wandb_default_mode", _wandb_default_mode)
    if not OmegaConf.has_resolver("grid_embedding_for"):
        OmegaConf.register_new_resolver("grid_embedding_for", _grid_embedding_for)
    if not OmegaConf.has_resolver("run_tags"):
        OmegaConf.register_new_resolver("run_tags", run_tags)
    if not OmegaConf.has_resolver("process_log_suffix"):
        OmegaConf.register_new_resolver("process_log_suffix", process_log_suffix)


register_resolvers()


def _get(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, throw_on_missing=False)
    return value


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")


def validate_train_config(cfg: DictConfig) -> None:
    """Cheap checks of the composed config; raises :class:`ConfigError` naming the key."""
    for key in ("data", "model", "model.net", "trainer"):
        if _get(cfg, key) is None:
            raise ConfigError(f"config key '{key}' is missing")
    if OmegaConf.is_missing(cfg.data, "root") or (
        cfg.data.get("source") == "gazecapture" and not cfg.data.get("root")
    ):
        raise ConfigError("data.root is required for data=gazecapture: "
                          "pass data.root=/path/to/GazeCapture (raw or processed)")
    for key in ("data.batch_size", "data.eval_batch_size", "data.face_size", "data.eye_size",
                "trainer.max_epochs"):
        _positive_int(cfg, key)
    if int(_get(cfg, "data.num_workers") or 0) < 0:
        raise ConfigError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    _metric_names(cfg)
    _tags(cfg)
    _position(cfg)
    lr = _get(cfg, "model.optimizer.lr")
    if lr is not None and not float(lr) > 0:
        raise ConfigError(f"model.optimizer.lr must be > 0, got {lr!r}")


def _position(cfg: DictConfig) -> None:
    """``model.position`` is a known choice and ``data.grid_embedding`` agrees with it."""
    position = _get(cfg, "model.position")
    if position is None:  # a model without the choice (iTracker)
        return
    if position not in POSITIONS:
        raise ConfigError(f"model.position must be one of {', '.join(POSITIONS)}, "
                          f"got {position!r}")
    grid = bool(_get(cfg, "data.grid_embedding"))
    if grid != (position == "input"):
        raise ConfigError(f"data.grid_embedding={str(grid).lower()} does not fit "
                          f"model.position={position}: the grid embedding is an input only for "
                          "model.position=input; leave data.grid_embedding unset (it follows "
                          f"model.position) or set it to {str(position == 'input').lower()}")


def _tags(cfg: DictConfig) -> None:
    tags = _get(cfg, "tags")
    if tags is None:
        return
    if not OmegaConf.is_list(tags) or not all(isinstance(t, str) and t for t in tags):
        raise ConfigError(f"tags must be a list of words, e.g. tags=[baseline,lr3e-3] "
                          f"(tags=[one] for a single tag), got {tags!r}")


def _metric_names(cfg: DictConfig) -> None:
    names = _get(cfg, "optimized_metric")
    if names is None or isinstance(names, str):
        return
    if (not OmegaConf.is_list(names) or len(names) == 0
            or not all(isinstance(n, str) and n for n in names)):
        raise ConfigError("optimized_metric must be a metrics.json key (e.g. test/error_cm) or a "
                          f"list of keys for a multi-objective search, got {names!r}")


def build_net(net_cfg: DictConfig | dict) -> torch.nn.Module:
    """Instantiate ``model.net``, turning a failure into an error that names the key."""
    try:
        return instantiate(net_cfg)
    except Exception as err:  # hydra wraps import/type errors in its own exceptions
        target = (net_cfg or {}).get("_target_")
        hint = ""
        if "image_size" in str(err):
            hint = " (model.net.image_size follows data.face_size)"
        raise ConfigError(f"model.net (_target_={target}) could not be built: {err}{hint}") from err


def check_input_shapes(net: torch.nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    """Run one dummy sample through ``net`` so a size it cannot take fails before training.

    ``shapes``: the per-sample shape of every field the data can give
    (:func:`tinytracker.data.dataset.input_shapes`)."""
    keys = tuple(getattr(net, "input_keys", ()))
    unknown = set(keys) - set(shapes)
    if not keys or unknown:
        raise ConfigError(f"model.net must declare input_keys from {tuple(shapes)}, got {keys}")
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(*[torch.zeros(1, *shapes[k]) for k in keys])
    except Exception as err:
        sizes = {k: shapes[k] for k in keys}
        raise ConfigError(
            f"data.face_size / data.eye_size: the model '{type(net).__name__}' cannot take "
            f"inputs of shape {sizes}: {err}"
        ) from err
    finally:
        net.train(was_training)
    if tuple(out.shape) != (1, 2):
        raise ConfigError(f"model.net must output (batch, 2) gaze in cm, got {tuple(out.shape)}")


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
