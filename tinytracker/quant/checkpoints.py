"""Float or quantized? The one home of that question, for checkpoints and for built nets.

Which kind of checkpoint is this, and does it fit the config? Checked before any work.
Importing this module does not import Brevitas, so float entry points (and anything that only
reads an ONNX file) can use it cheaply.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from tinytracker.models.checkpoint import CheckpointError
from tinytracker.quant.scheme import QUANTIZED_TARGET

__all__ = ["QUANTIZED_TARGET", "CheckpointKindError", "is_quantized_checkpoint",
           "is_quantized_net", "describe", "require_kind", "config_differences"]


class CheckpointKindError(CheckpointError):
    """A float checkpoint where a quantized one is needed, a quantized one where a float one
    is needed, or a checkpoint of another model config."""


def is_quantized_checkpoint(ckpt: Mapping[str, Any]) -> bool:
    """Whether a loaded tinytracker checkpoint holds a Brevitas-quantized net (by its config)."""
    net = (ckpt.get("hyper_parameters") or {}).get("net") or {}
    return net.get("_target_") == QUANTIZED_TARGET


def is_quantized_net(net: Any) -> bool:
    """Whether a built net is the Brevitas wrapper. Never imports Brevitas: if the wrapper's
    module was never imported, no net can be one of its instances."""
    wrapper = sys.modules.get(QUANTIZED_TARGET.rpartition(".")[0])
    return wrapper is not None and isinstance(net, wrapper.BrevitasNet)


def describe(ckpt: Mapping[str, Any]) -> str:
    net = (ckpt.get("hyper_parameters") or {}).get("net") or {}
    if is_quantized_checkpoint(ckpt):
        inner = (net.get("float_net") or {}).get("_target_", "?")
        return f"a quantized checkpoint (BrevitasNet around {inner})"
    return f"a float checkpoint ({net.get('_target_', '?')})"


def require_kind(ckpt: Mapping[str, Any], path: Any, key: str, quantized: bool,
                 hint: str) -> None:
    """Fail unless ``ckpt`` (given as ``key=path``) is quantized (or float, as asked)."""
    if is_quantized_checkpoint(ckpt) == quantized:
        return
    wanted = "a quantized (QAT/PTQ) checkpoint" if quantized else "a float checkpoint"
    raise CheckpointKindError(f"{key}={path} is {describe(ckpt)}, but {wanted} is needed "
                              f"here. {hint}")


def config_differences(expected: Any, found: Any, prefix: str) -> list[str]:
    """``key: expected X, checkpoint has Y`` for every leaf where two plain configs differ."""
    if isinstance(expected, Mapping) and isinstance(found, Mapping):
        out: list[str] = []
        for k in sorted(set(expected) | set(found), key=str):
            sub = f"{prefix}.{k}" if prefix else str(k)
            if k not in found:
                out.append(f"{sub}: config has {expected[k]!r}, checkpoint has no such key")
            elif k not in expected:
                out.append(f"{sub}: checkpoint has {found[k]!r}, config has no such key")
            else:
                out.extend(config_differences(expected[k], found[k], sub))
        return out
    if expected != found:
        return [f"{prefix}: config has {expected!r}, checkpoint has {found!r}"]
    return []
