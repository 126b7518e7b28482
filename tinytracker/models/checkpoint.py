"""Safe checkpoint loading: tensors and plain containers only, never arbitrary code.

``torch.load(weights_only=True)`` refuses pickled objects other than tensors and basic
containers, so a checkpoint crafted to run code on load is rejected instead of executed.
"""

from __future__ import annotations

import os
import pickle
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
    return ckpt


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
