"""Float layers swapped for Brevitas layers with the same weights, per the scheme.

* Every ``nn.Conv2d`` / ``nn.Linear`` becomes a ``QuantConv2d`` / ``QuantLinear``: symmetric
  narrow-range integer weights (per output channel by default, TFLite's and the IMX500's
  scheme). A layer not followed by an activation quantizes its own output, signed.
* Every ``nn.ReLU`` / ``nn.ReLU6`` quantizes its output unsigned (TFLite's asymmetric int8
  with zero point -128 on a [0, max] range is the same grid).
* Average pools and residual sums are re-quantized too, so that every tensor between layers is
  an integer tensor, as on the accelerator.

The swap by class is Brevitas' ``layerwise_quantize``, with a layer map whose keyword
arguments are resolved per module name (bit widths of the layer's group, whether its output is
quantized). Residual sums are ours: a residual block is a container whose forward adds, which
Brevitas finds only on an fx graph (``quantize``'s ``residual_handler``), and our nets cannot be
traced (see :mod:`tinytracker.quant.folding`).

**Scales** are powers of two by default (``scaling="po2"``): the IMX500's choice for
activations (Sony MCT's default IMX500 target), here for weights too. Then every product and
every sum of an int8 layer is exact in float32 (integers times powers of two, accumulators
below 2**24), so PyTorch, ONNX Runtime and integer hardware compute bit-identical outputs,
whatever their summation order. ``scaling="float"`` (TFLite's arbitrary scales) is slightly
finer, but float rounding then flips an intermediate value now and then, and outputs of two
runtimes differ by a step or two on a few samples.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from brevitas.graph.quantize import layerwise_quantize
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    Uint8ActPerTensorFloat,
)
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerChannelFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from tinytracker.quant.scheme import QuantScheme

# Flags that torchvision's ``InvertedResidual`` and our ``ExpandedInvertedResidual`` set when
# their forward adds the block input to its output: that sum is re-quantized.
RESIDUAL_FLAGS = ("use_res_connect", "use_residual")
ACTIVATIONS = (nn.ReLU, nn.ReLU6)
_PASS_THROUGH = (nn.Identity, nn.Dropout)  # between a layer and its activation
_AVG_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)

QUANTIZERS = {
    # (signed activations, unsigned activations, per-channel weights, per-tensor weights)
    "po2": (Int8ActPerTensorFixedPoint, Uint8ActPerTensorFixedPoint,
            Int8WeightPerChannelFixedPoint, Int8WeightPerTensorFixedPoint),
    "float": (Int8ActPerTensorFloat, Uint8ActPerTensorFloat,
              Int8WeightPerChannelFloat, Int8WeightPerTensorFloat),
}


class QuantOutput(nn.Module):
    """A float module whose output is re-quantized (residual blocks, average pools)."""

    def __init__(self, module: nn.Module, output_quant: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.output_quant = output_quant

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.output_quant(self.module(*args))


class QuantReLU6(nn.Sequential):
    """ReLU6, then an unsigned quantizer. Brevitas' generic activation layer does not apply a
    ReLU6 ``act_impl`` (it would pass negative values during calibration), so the float clamp
    is kept and its output quantized."""

    def __init__(self, act_quant: Any, bit_width: int) -> None:
        super().__init__(nn.ReLU6(), QuantIdentity(act_quant=act_quant, bit_width=bit_width,
                                                   return_quant_tensor=False))


def act_quant(scheme: QuantScheme, bits: int, signed: bool) -> QuantIdentity:
    """A stand-alone activation quantizer of the scheme's scaling."""
    signed_q, unsigned_q, _, _ = QUANTIZERS[scheme.scaling]
    return QuantIdentity(act_quant=signed_q if signed else unsigned_q, bit_width=bits,
                         return_quant_tensor=False)


def layer_kwargs(scheme: QuantScheme, weight_bits: int, has_bias: bool,
                 output_quant: Any = None, output_bits: int | None = None,
                 input_quant: Any = None, bias_quant: Any = None) -> dict[str, Any]:
    """Keyword arguments of a ``QuantConv2d`` / ``QuantLinear`` of the scheme.

    ``output_quant`` / ``input_quant``: a quantizer class (with ``output_bits``) or an existing
    proxy to share; ``bias_quant`` only with an input quantizer (the bias scale is
    ``input_scale * weight_scale``).
    """
    _, _, per_channel_q, per_tensor_q = QUANTIZERS[scheme.scaling]
    kwargs: dict[str, Any] = {
        "weight_quant": per_channel_q if scheme.per_channel else per_tensor_q,
        "weight_bit_width": weight_bits,
        "bias": has_bias,
        "return_quant_tensor": False,
        "output_quant": output_quant,
        "input_quant": input_quant,
        "bias_quant": bias_quant,
    }
    if output_bits is not None:
        kwargs["output_bit_width"] = output_bits
    return kwargs


def swap_layers(net: nn.Module, scheme: QuantScheme, last: nn.Module | None) -> None:
    """Replace the float layers, activations, pools and residual sums of ``net``, in place.

    ``last``: the layer whose output is the net's output; the wrapper quantizes that output,
    so the layer does not.
    """
    for name, child in net.named_modules():
        if isinstance(child, nn.Conv2d) and child.padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode={child.padding_mode!r} is not supported")
    quantized_output = _output_quantized_layers(net, last)
    residuals = [(parent, attr, f"{prefix}{attr}") for prefix, parent in _named_parents(net)
                 for attr, child in parent.named_children()
                 if any(getattr(child, flag, False) for flag in RESIDUAL_FLAGS)]
    with _quiet_brevitas():
        layerwise_quantize(net, compute_layer_map=_layer_map(scheme, quantized_output))
    for parent, attr, name in residuals:
        setattr(parent, attr, QuantOutput(getattr(parent, attr),
                                          act_quant(scheme, scheme.bits_for(name).act, True)))


def _layer_map(scheme: QuantScheme, quantized_output: set[str]) -> dict[type, tuple]:
    """Brevitas' ``compute_layer_map``: class -> (quantized class, kwargs); a kwarg that is a
    lambda of ``(module, name)`` is evaluated per module (name relative to the float net)."""
    signed_q, unsigned_q, _, _ = QUANTIZERS[scheme.scaling]

    def weights(module: nn.Module, name: str) -> dict[str, Any]:
        bits = scheme.bits_for(name)
        out = name in quantized_output
        return layer_kwargs(scheme, bits.weight, module.bias is not None,
                            output_quant=signed_q if out else None,
                            output_bits=bits.act if out else None)

    def kw(key: str) -> Any:
        return lambda module, name: weights(module, name).get(key)

    layer = {k: kw(k) for k in ("weight_quant", "weight_bit_width", "output_quant",
                                 "output_bit_width")}
    layer |= {"return_quant_tensor": False, "input_quant": None, "bias_quant": None}
    act_bits = {"bit_width": lambda module, name: scheme.bits_for(name).act}
    pool = {"module": lambda module: module,
            "output_quant": lambda module, name: act_quant(scheme, scheme.bits_for(name).act,
                                                           signed=True)}
    return {
        nn.Conv2d: (QuantConv2d, layer),
        nn.Linear: (QuantLinear, layer),
        nn.ReLU: (QuantReLU, {"act_quant": unsigned_q, "return_quant_tensor": False,
                              **act_bits}),
        nn.ReLU6: (QuantReLU6, {"act_quant": unsigned_q, **act_bits}),
        **{cls: (QuantOutput, pool) for cls in _AVG_POOLS},
    }


def _named_parents(net: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in net.named_modules():
        yield (f"{name}." if name else ""), module


def _output_quantized_layers(net: nn.Module, last: nn.Module | None) -> set[str]:
    """Names of the conv/linear layers that quantize their own output: not the net's last
    layer (the wrapper quantizes the output) and not followed by an activation (it quantizes;
    TFLite fuses conv + ReLU)."""
    names = set()
    for prefix, parent in _named_parents(net):
        for attr, child in parent.named_children():
            if isinstance(child, (nn.Conv2d, nn.Linear)) and child is not last \
                    and not _followed_by_activation(parent, attr):
                names.add(f"{prefix}{attr}")
    return names


def _followed_by_activation(parent: nn.Module, child_name: str) -> bool:
    if not isinstance(parent, nn.Sequential):
        return False
    names = list(parent._modules)
    for nxt in names[names.index(child_name) + 1 :]:
        if isinstance(parent._modules[nxt], _PASS_THROUGH):
            continue
        return isinstance(parent._modules[nxt], ACTIVATIONS)
    return False


@contextmanager
def _quiet_brevitas() -> Iterator[None]:
    with warnings.catch_warnings():
        # Brevitas warns that its own input_* / output_* defaults go unused when a layer has
        # no such quantizer, which is the point here
        warnings.filterwarnings("ignore", "Keyword arguments are being passed")
        yield


def output_layer(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module | None:
    """The conv/linear layer whose output *is* the net's output (``None`` if none is).

    Outputs are matched by identity and kept alive during the pass: matched by ``id()`` alone,
    a freed layer output's id is reused by a later tensor (the late net's
    ``cat(features, face_box)``), and which layer lost its output quantizer depended on memory
    reuse, so a run could build another net than the one its checkpoint's config rebuilds.
    """
    outputs: list[tuple[torch.Tensor, nn.Module]] = []
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: outputs.append((out, mod)))
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            out = net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return next((mod for produced, mod in reversed(outputs) if produced is out), None)


def check_fully_quantized(net: nn.Module) -> None:
    float_layers = [
        name for name, m in net.named_modules()
        if type(m) in (nn.Conv2d, nn.Linear) or isinstance(m, _BatchNorm)
    ]
    if float_layers:
        raise ValueError(f"layers left unquantized: {float_layers[:5]}")


def is_layer(module: nn.Module) -> bool:
    return isinstance(module, (QuantConv2d, QuantLinear))
