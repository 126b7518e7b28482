"""ImageNet initialisation of TinyTracker's MobileNetV3 backbone from a local file.

The source is a torchvision ``mobilenet_v3_small`` state dict saved with ``torch.save`` (e.g.
``torch.save(mobilenet_v3_small(weights="IMAGENET1K_V1").state_dict(), path)`` on a machine
with internet access). Nothing is downloaded here; models start from random init by default.

torchvision's net is the *full* MobileNetV3-Small (squeeze-excite, hard-swish, 5x5 kernels in
blocks 4-11) while ours is the minimalistic variant, so only part of it transfers: layers are
paired in network order (squeeze-excite layers of the source skipped) and a tensor is copied
only where the shapes agree. The 5x5 depthwise kernels, and every layer at ``width_mult`` != 1,
are skipped and reported. The authors used Keras' minimalistic ImageNet weights, which
torchvision does not publish; this is the closest local substitute.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v3_small
from torchvision.ops.misc import SqueezeExcitation

log = logging.getLogger(__name__)

_PAIRED_LAYERS = (nn.Conv2d, nn.BatchNorm2d)


@dataclass
class BackboneLoadReport:
    """Which backbone tensors were copied from the file and which were left as initialised."""

    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: reason"


def load_backbone_weights(model: nn.Module, path: str) -> BackboneLoadReport:
    """Copy matching ImageNet tensors from a torchvision ``mobilenet_v3_small`` state dict.

    Args:
        model: a module with a ``backbone`` attribute (TinyTracker), or the backbone itself;
            tensor names in the report are relative to it.
        path: local ``.pth`` file holding the state dict (or a dict with a ``state_dict`` key).

    Returns:
        The tensors loaded and those skipped, with the reason.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"ImageNet backbone weights not found at {path!r}. Save a torchvision "
            "mobilenet_v3_small state dict there (torch.save(model.state_dict(), path)) or "
            "leave the pretrained path unset to start from random init."
        )
    backbone = getattr(model, "backbone", model)
    state = torch.load(file, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    source = mobilenet_v3_small()  # random init, only used to give the tensors a structure
    missing, _ = source.load_state_dict(state, strict=False)
    if len(missing) == len(source.state_dict()):
        raise ValueError(f"{path!r} holds no torchvision mobilenet_v3_small tensors")

    src_layers = _layers_in_order(source.features)
    dst_layers = _layers_in_order(backbone)
    if len(src_layers) != len(dst_layers) or any(
        type(s) is not type(d) for (_, s), (_, d) in zip(src_layers, dst_layers, strict=False)
    ):
        raise ValueError(
            f"{type(backbone).__name__} does not have MobileNetV3-Small's layer sequence "
            f"({len(dst_layers)} conv/BN layers, expected {len(src_layers)}); only TinyTracker's "
            "backbone can take these weights"
        )
    report = BackboneLoadReport()
    with torch.no_grad():
        for (_, src), (dst_name, dst) in zip(src_layers, dst_layers, strict=True):
            _copy_layer(src, dst, dst_name, report)
    log.info(
        "backbone weights from %s: %d tensors loaded, %d skipped",
        path,
        len(report.loaded),
        len(report.skipped),
    )
    return report


def _layers_in_order(root: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and BN layers in registration order, squeeze-excite internals excluded."""
    inside_se = {
        id(m) for se in root.modules() if isinstance(se, SqueezeExcitation) for m in se.modules()
    }
    return [
        (name, m)
        for name, m in root.named_modules()
        if isinstance(m, _PAIRED_LAYERS) and id(m) not in inside_se
    ]


def _copy_layer(src: nn.Module, dst: nn.Module, dst_name: str, report: BackboneLoadReport) -> None:
    src_tensors = {**dict(src.named_parameters()), **dict(src.named_buffers())}
    dst_tensors = {**dict(dst.named_parameters()), **dict(dst.named_buffers())}
    for key, target in dst_tensors.items():
        name = f"{dst_name}.{key}"
        value = src_tensors.get(key)
        if value is None:
            report.skipped.append(f"{name}: not in source")
        elif value.shape != target.shape:
            report.skipped.append(
                f"{name}: shape {tuple(value.shape)} in file, {tuple(target.shape)} in model"
            )
        else:
            target.copy_(value)
            report.loaded.append(name)
