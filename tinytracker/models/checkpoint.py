"""Safe checkpoint loading: tensors and plain containers only, never arbitrary code.

``torch.load(weights_only=True)`` refuses pickled objects other than tensors and basic
containers, so a checkpoint crafted to run code on load is rejected instead of executed.
The net is rebuilt from the checkpoint's config with Hydra's ``instantiate``, which calls
whatever ``_target_`` names; so every ``_target_`` must name a network class of this package
(an ``nn.Module`` under ``tinytracker.``), or a ``torch.optim`` optimizer or scheduler, before
anything is built (:func:`check_targets`): a crafted ``{"_target_": "shutil.rmtree", ...}``
is refused, never called.
"""

from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from tinytracker.models.module import GazeModule


class CheckpointError(ValueError):
    """A checkpoint that is missing, unsafe or does not fit the requested model."""


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a Lightning checkpoint with ``weights_only`` semantics."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it needs arbitrary unpickling (code execution), which "
            f"tinytracker never does. Only checkpoints holding tensors and plain data load. "
            f"Details: {str(err).splitlines()[0]}"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {err}") from err
    if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor)
                                               for v in ckpt.values()):
        raise CheckpointError(
            f"{path} holds a plain state_dict (tensors only), not a checkpoint: expected a "
            "Lightning checkpoint of python -m tinytracker.train (or tinytracker.import_tflite) "
            "with 'state_dict' and 'hyper_parameters', which say which net the weights are for")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no 'state_dict')")
    if "net" not in (ckpt.get("hyper_parameters") or {}):
        raise CheckpointError(f"{path} was not written by tinytracker (no hyper_parameters.net)")
    check_targets(ckpt["hyper_parameters"], path)
    return ckpt


# what each config of a checkpoint may build: (module prefix, base class)
_ALLOWED = {"net": ("tinytracker.", torch.nn.Module, "torch.nn.Module"),
            "optimizer": ("torch.optim.", torch.optim.Optimizer, "torch.optim.Optimizer"),
            "scheduler": ("torch.optim.lr_scheduler.", torch.optim.lr_scheduler.LRScheduler,
                          "torch.optim.lr_scheduler.LRScheduler")}


def check_targets(hparams: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose configs would build anything but a tinytracker network, a
    torch optimizer or a scheduler (a ``_target_`` is called when the config is built)."""
    for key, (prefix, base, base_name) in _ALLOWED.items():
        for where, target in _targets(hparams.get(key), f"hyper_parameters.{key}"):
            if not isinstance(target, str) or not target.startswith(prefix) or not (
                    isinstance(cls := _locate(target), type) and issubclass(cls, base)):
                raise CheckpointError(
                    f"refusing to load {path}: {where}._target_={target!r} is not a "
                    f"{base_name} class under {prefix}*; a "
                    "checkpoint's config only builds tinytracker networks and torch "
                    "optimizers, nothing else")


def _targets(cfg: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(cfg, dict):
        if "_target_" in cfg:
            yield where, cfg["_target_"]
        for k, v in cfg.items():
            yield from _targets(v, f"{where}.{k}")
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            yield from _targets(v, f"{where}[{i}]")


def _locate(target: str) -> Any:
    """The object ``target`` names (``package.module.Class``), or None; only called on names
    under the allowed prefixes, so only our own and torch's modules are imported."""
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def module_from_checkpoint(path: str | os.PathLike, strict: bool = True) -> GazeModule:
    """Rebuild the :class:`GazeModule` a checkpoint was trained as, weights loaded."""
    ckpt = load_checkpoint(path)
    module = GazeModule(**ckpt["hyper_parameters"])
    try:
        missing, unexpected = module.load_state_dict(ckpt["state_dict"], strict=False)
    except RuntimeError as err:  # shape mismatches; the message names each key
        raise CheckpointError(f"{path} does not match its model config: {err}") from err
    metric_states = ("total_cm", "count")
    missing = [k for k in missing if not k.endswith(metric_states)]
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{path} does not match its model config: missing keys {missing[:10]}, "
            f"unexpected keys {unexpected[:10]}"
        )
    module.eval()
    return module
