"""Every quantized layer shares the quantizer of its input, so that its bias is an int32.

Integer runtimes store a bias as int32 at scale ``input_scale * weight_scale``. ONNX Runtime
would otherwise re-quantize a float bias on load and no longer compute what PyTorch computes.
So each layer gets, as its ``input_quant``, the very quantizer whose output it consumes (same
scale: re-quantizing is exact), and an ``Int32Bias``. A layer whose input is not the output of
one quantizer (e.g. a concatenation of two inputs) gets its own signed input quantizer.

Brevitas' ``align_input_quant`` aligns quantizers on an fx graph (inside ``quantize``); our nets
cannot be traced (:mod:`tinytracker.quant.folding`), so producers and consumers are found with
one forward pass and hooks instead. The layer itself is rebuilt by Brevitas' own rewriter
(``ModuleToModuleByInstance``), which keeps its weights.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from brevitas import config as brevitas_config
from brevitas.graph.base import ModuleToModuleByInstance
from brevitas.nn import QuantIdentity, QuantReLU
from brevitas.quant import Int32Bias
from torch import nn

from tinytracker.quant.scheme import QuantScheme
from tinytracker.quant.swap import QUANTIZERS, is_layer, layer_kwargs


def _output_quantizer(module: nn.Module) -> nn.Module | None:
    """The quantizer that produced ``module``'s output, if its output is quantized."""
    if isinstance(module, (QuantIdentity, QuantReLU)):
        return module.act_quant
    if is_layer(module) and module.output_quant.is_quant_enabled:
        return module.output_quant
    return None


@torch.no_grad()
def input_quantizers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[nn.Module, Any]:
    """For each quantized layer, the quantizer whose output it consumes (``None``: unknown).

    Found with one forward pass: tensors are matched by storage, so views (``flatten``) of a
    quantized tensor count as quantized. Outputs are kept alive during the pass so that no
    storage is reused by another tensor.
    """
    produced: dict[int, nn.Module] = {}
    alive: list[torch.Tensor] = []
    consumers: dict[nn.Module, Any] = {}

    def after(module, _args, out):
        quantizer = _output_quantizer(module)
        if quantizer is not None and torch.is_tensor(out):
            produced[out.untyped_storage().data_ptr()] = quantizer
            alive.append(out)

    def before(module, args):
        x = args[0]
        consumers[module] = produced.get(x.untyped_storage().data_ptr()) if torch.is_tensor(
            x) else None

    hooks = [m.register_forward_hook(after) for m in model.modules()
             if _output_quantizer(m) is not None]
    hooks += [m.register_forward_pre_hook(before) for m in model.modules() if is_layer(m)]
    try:
        model.eval()
        model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return consumers


def link_inputs(model: nn.Module, inputs: tuple[torch.Tensor, ...], scheme: QuantScheme) -> None:
    """Give every layer of ``model`` the quantizer of its input and an int32 bias, in place."""
    upstream = input_quantizers(model, inputs)
    for layer, quantizer in upstream.items():
        output_quant = layer.output_quant if layer.output_quant.is_quant_enabled else None
        bits = int(layer.weight_quant.bit_width())
        if quantizer is None:
            quantizer = QUANTIZERS[scheme.scaling][0].let(bit_width=scheme.default.act)
        kwargs = layer_kwargs(
            scheme, bits, layer.bias is not None, output_quant=output_quant,
            input_quant=quantizer, bias_quant=Int32Bias if layer.bias is not None else None)
        rewriter = ModuleToModuleByInstance(layer, type(layer), **kwargs)
        ignore_missing = brevitas_config.IGNORE_MISSING_KEYS
        brevitas_config.IGNORE_MISSING_KEYS = True  # the shared input quantizer's state
        try:
            with warnings.catch_warnings():
                # Brevitas warns that its own input_* defaults go unused when a quantizer is
                # shared
                warnings.filterwarnings("ignore", "Keyword arguments are being passed")
                rewriter.apply(model)
        finally:
            brevitas_config.IGNORE_MISSING_KEYS = ignore_missing
