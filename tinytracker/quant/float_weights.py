"""The float network of a checkpoint, whatever kind it is: the start of every post-training tool.

A float checkpoint's net is used as it is. A Brevitas (QAT/PTQ) checkpoint holds, next to its
quantizer state, the float "shadow" weights that quantization-aware training optimised with
8-bit rounding in the loop: those are the weights another quantizer (Sony's MCT for the IMX500)
should start from. They are returned in the float architecture of the checkpoint's
``float_net`` config, with batch norm folded as the QAT net had it.
"""

from __future__ import annotations

from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn


def float_net_of(net: nn.Module, net_config: dict[str, Any]) -> nn.Module:
    """The float net behind ``net`` (built from ``net_config``, a checkpoint's ``net``)."""
    from tinytracker.quant.scheme import QUANTIZED_TARGET

    if net_config.get("_target_") != QUANTIZED_TARGET:
        return net
    return float_weights_of_quantized(net, net_config["float_net"])


@torch.no_grad()
def float_weights_of_quantized(quantized: nn.Module, float_config: dict[str, Any]) -> nn.Module:
    """A float net (config ``float_config``, batch norm folded) with ``quantized``'s weights.

    ``quantized`` is a :class:`~tinytracker.quant.brevitas.BrevitasNet`: its layers are the
    float net's convolutions and linear layers, in the same order, after BN folding; each
    keeps float weights and biases (the quantizers round them on the fly).
    """
    from brevitas.nn import QuantConv2d, QuantLinear

    from tinytracker.quant.folding import fold_batchnorm

    net = fold_batchnorm(instantiate(dict(float_config)).eval())
    # model.position=late: the host head was never quantized (BrevitasNet keeps it float,
    # outside its swapped net); it is copied whole, the rest layer by layer
    head = net.host_head() if hasattr(net, "host_head") else None
    in_head = {id(m) for m in head.modules()} if head is not None else set()
    float_layers = [(n, m) for n, m in net.named_modules()
                    if type(m) in (nn.Conv2d, nn.Linear) and id(m) not in in_head]
    quant_layers = [(n, m) for n, m in quantized.net.named_modules()
                    if isinstance(m, (QuantConv2d, QuantLinear))]
    if len(float_layers) != len(quant_layers):
        raise ValueError(f"the quantized net has {len(quant_layers)} layers, its float_net config "
                         f"{len(float_layers)}: they do not describe the same model")
    for (fname, fl), (qname, ql) in zip(float_layers, quant_layers, strict=True):
        if fl.weight.shape != ql.weight.shape:
            raise ValueError(f"layer {qname} of the quantized net has weights "
                             f"{tuple(ql.weight.shape)}, float layer {fname} "
                             f"{tuple(fl.weight.shape)}")
        fl.weight.copy_(ql.weight)
        if fl.bias is not None:
            fl.bias.copy_(ql.bias if ql.bias is not None else torch.zeros_like(fl.bias))
    if head is not None:
        head.load_state_dict(quantized.host_head().state_dict())
    baked = getattr(quantized.net, "baked_grid", None)  # TinyTrackerS' constant grid
    if baked is not None:
        net.baked_grid = baked.clone()
    return net
