"""Brevitas fake-quantization of the float gaze nets: a wrapper, never a second architecture.

:class:`BrevitasNet` takes a float net (a module, or its Hydra config) and returns it with

* **batch norm folded** into the preceding convolution (``fold_batchnorm``), as TFLite and the
  IMX500 converter do before quantizing. QAT then trains exactly the weights that are deployed
  and per-channel scales are computed on the folded kernels; the exported graph has no BN, so
  PyTorch and ONNX Runtime run the same arithmetic (best parity). BN statistics are frozen from
  then on, which is what QAT fine-tuning usually does anyway (Jacob et al., CVPR 2018, sec. 3.2);
* every ``nn.Conv2d`` / ``nn.Linear`` swapped for a Brevitas ``QuantConv2d`` / ``QuantLinear``
  with the same weights, symmetric narrow-range integer weights (per output channel by
  default, TFLite's and the IMX500's scheme) and an **int32 bias** at scale
  ``input_scale * weight_scale``, as integer runtimes store it (ONNX Runtime would otherwise
  re-quantize a float bias on load and no longer compute what PyTorch computes);
* every ``nn.ReLU`` / ``nn.ReLU6`` quantizing its output unsigned (TFLite's asymmetric int8
  with zero point -128 on a [0, max] range is the same grid); a convolution or linear layer not
  followed by an activation quantizes its own output signed; residual sums and average pools
  are re-quantized too, so that every tensor between layers is an integer tensor, as on the
  accelerator;
* each input quantized by a ``QuantIdentity`` and the output quantized with ``output_bits``
  but returned as a float tensor (cm), like a TFLite model with a dequantize at its output.

**Scales** are powers of two by default (``scaling="po2"``): the IMX500's choice for
activations (Sony MCT's default IMX500 target), here for weights too. Then every product and
every sum of an int8 layer is exact in float32 (integers times powers of two, accumulators
below 2**24), so PyTorch, ONNX Runtime and integer hardware compute bit-identical outputs,
whatever their summation order. ``scaling="float"`` (TFLite's arbitrary scales) is slightly
finer, but float rounding then flips an intermediate value now and then, and outputs of two
runtimes differ by a step or two on a few samples.

Bit widths are per layer group: ``layer_bits`` maps a float-net module-name prefix
(``backbone``, ``backbone.features.3``, ``head``...) to bits; the longest matching prefix wins.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from brevitas.graph.calibrate import calibration_mode
from brevitas.nn import QuantConv2d, QuantIdentity, QuantLinear, QuantReLU
from brevitas.quant import (
    Int8ActPerTensorFloat,
    Int8WeightPerChannelFloat,
    Int8WeightPerTensorFloat,
    Int32Bias,
    Uint8ActPerTensorFloat,
)
from brevitas.quant.fixed_point import (
    Int8ActPerTensorFixedPoint,
    Int8WeightPerChannelFixedPoint,
    Int8WeightPerTensorFixedPoint,
    Uint8ActPerTensorFixedPoint,
)
from hydra.utils import instantiate
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

MIN_BITS, MAX_BITS = 2, 16
SCALINGS = ("po2", "float")
# Flags that torchvision's ``InvertedResidual`` and our ``ExpandedInvertedResidual`` set when
# their forward adds the block input to its output: that sum is re-quantized.
RESIDUAL_FLAGS = ("use_res_connect", "use_residual")
_ACTIVATIONS = (nn.ReLU, nn.ReLU6)
_PASS_THROUGH = (nn.Identity, nn.Dropout)  # between a layer and its activation
_AVG_POOLS = (nn.AdaptiveAvgPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class Bits:
    """Bit widths of one layer group: weight kernels and the activations the group emits."""

    weight: int
    act: int


class QuantScheme:
    """Validated bit widths, resolved per float-net module name by longest prefix.

    Args:
        weight_bits: default kernel width.
        act_bits: default activation width.
        layer_bits: ``{prefix: bits}`` (both widths) or ``{prefix: {weight: w, act: a}}``.
        input_bits: width of the quantized inputs.
        output_bits: width of the quantized output (``None``: the last layer's output is not
            quantized; its int32 accumulator is dequantized directly).
        per_channel: one weight scale per output channel (else one per tensor).
        scaling: ``"po2"`` (power-of-two scales) or ``"float"`` (any positive scale).
    """

    def __init__(
        self,
        weight_bits: int = 8,
        act_bits: int = 8,
        layer_bits: Mapping[str, Any] | None = None,
        input_bits: int = 8,
        output_bits: int | None = 8,
        per_channel: bool = True,
        scaling: str = "po2",
    ) -> None:
        if scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
        self.scaling = scaling
        self.default = Bits(_bits("weight_bits", weight_bits), _bits("act_bits", act_bits))
        self.input_bits = _bits("input_bits", input_bits)
        self.output_bits = None if output_bits is None else _bits("output_bits", output_bits)
        if not isinstance(per_channel, bool):
            raise ValueError(f"per_channel must be true or false, got {per_channel!r}")
        self.per_channel = per_channel
        self.groups: dict[str, Bits] = {}
        for prefix, value in (layer_bits or {}).items():
            self.groups[str(prefix)] = self._group_bits(str(prefix), value)

    def _group_bits(self, prefix: str, value: Any) -> Bits:
        key = f"layer_bits.{prefix}"
        if isinstance(value, Mapping):
            unknown = set(value) - {"weight", "act"}
            if unknown:
                raise ValueError(f"{key} takes 'weight' and 'act', got {sorted(unknown)}")
            return Bits(
                _bits(f"{key}.weight", value.get("weight", self.default.weight)),
                _bits(f"{key}.act", value.get("act", self.default.act)),
            )
        bits = _bits(key, value)
        return Bits(bits, bits)

    def bits_for(self, name: str) -> Bits:
        """Widths for the float-net module ``name`` (longest matching ``layer_bits`` prefix)."""
        best, best_len = self.default, -1
        for prefix, bits in self.groups.items():
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = bits, len(prefix)
        return best

    def check_prefixes(self, names: Iterable[str]) -> None:
        names = list(names)
        for prefix in self.groups:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                tops = sorted({n.split(".")[0] for n in names if n})
                raise ValueError(
                    f"layer_bits.{prefix} names no layer of the model; use module-name "
                    f"prefixes of the float net, e.g. {tops}"
                )

    def as_dict(self) -> dict[str, Any]:
        return {
            "weight_bits": self.default.weight,
            "act_bits": self.default.act,
            "layer_bits": {p: {"weight": b.weight, "act": b.act} for p, b in self.groups.items()},
            "input_bits": self.input_bits,
            "output_bits": self.output_bits,
            "per_channel": self.per_channel,
            "scaling": self.scaling,
        }


def _bits(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(f"{key} must be an integer from {MIN_BITS} to {MAX_BITS}, got {value!r}")
    return value


# ------------------------------------------------------------------------ batch-norm folding
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of an ``nn.Sequential`` into the conv, in place.

    The BN is replaced by ``nn.Identity``; the conv gains a bias if it had none. Uses the
    running statistics (inference behaviour). A BN that does not follow a conv is an error.
    """
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            conv, bn = seq[i - 1], seq[i]
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                seq[i - 1] = _fold(conv, bn)
                seq[i] = nn.Identity()
    left = [name for name, m in net.named_modules() if isinstance(m, _BatchNorm)]
    if left:
        raise ValueError(f"cannot fold batch norm {left[:3]}: it does not follow a Conv2d")
    return net


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    folded = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        conv.dilation, conv.groups, bias=True, padding_mode=conv.padding_mode,
    )
    folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    folded.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return folded


# ------------------------------------------------------------------------ quantizers
_QUANTIZERS = {
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


def _act_quant(scheme: QuantScheme, bits: int, signed: bool) -> QuantIdentity:
    signed_q, unsigned_q, _, _ = _QUANTIZERS[scheme.scaling]
    return QuantIdentity(act_quant=signed_q if signed else unsigned_q, bit_width=bits,
                         return_quant_tensor=False)


def _quant_activation(act: nn.Module, scheme: QuantScheme, bits: int) -> nn.Module:
    if isinstance(act, nn.ReLU6):
        # Brevitas' generic activation layer does not apply a ReLU6 act_impl (it would pass
        # negative values during calibration): keep the float clamp, then quantize unsigned.
        return nn.Sequential(nn.ReLU6(), _act_quant(scheme, bits, signed=False))
    return QuantReLU(act_quant=_QUANTIZERS[scheme.scaling][1], bit_width=bits,
                     return_quant_tensor=False)


@torch.no_grad()
def _quant_layer(layer: nn.Module, scheme: QuantScheme, weight_bits: int,
                 output_quant: Any = None, output_bits: int | None = None,
                 input_quant: Any = None) -> nn.Module:
    """``layer`` (float or already quantized) as a Brevitas layer with the same weights.

    ``output_quant`` / ``input_quant``: a quantizer class (with ``output_bits``) or an existing
    proxy to share. With an input quantizer the bias is quantized to int32 at
    ``input_scale * weight_scale``, as integer runtimes store it.
    """
    _, _, per_channel_q, per_tensor_q = _QUANTIZERS[scheme.scaling]
    kwargs: dict[str, Any] = {
        "weight_quant": per_channel_q if scheme.per_channel else per_tensor_q,
        "weight_bit_width": weight_bits,
        "bias": layer.bias is not None,
        "return_quant_tensor": False,
        "output_quant": output_quant,
        "input_quant": input_quant,
        "bias_quant": Int32Bias if input_quant is not None and layer.bias is not None else None,
    }
    if output_bits is not None:
        kwargs["output_bit_width"] = output_bits
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise ValueError(f"padding_mode={layer.padding_mode!r} is not supported")
        quant: nn.Module = QuantConv2d(
            layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
            layer.padding, layer.dilation, layer.groups, **kwargs,
        )
    else:
        quant = QuantLinear(layer.in_features, layer.out_features, **kwargs)
    quant.weight.copy_(layer.weight)
    if layer.bias is not None:
        quant.bias.copy_(layer.bias)
    return quant


def _followed_by_activation(parent: nn.Module, child_name: str) -> bool:
    if not isinstance(parent, nn.Sequential):
        return False
    names = list(parent._modules)
    for nxt in names[names.index(child_name) + 1 :]:
        if isinstance(parent._modules[nxt], _PASS_THROUGH):
            continue
        return isinstance(parent._modules[nxt], _ACTIVATIONS)
    return False


def _swap(module: nn.Module, prefix: str, scheme: QuantScheme, last: nn.Module | None) -> None:
    """Replace float layers and activations below ``module`` by quantized ones, in place."""
    for child_name, child in list(module.named_children()):
        name = f"{prefix}{child_name}"
        bits = scheme.bits_for(name)
        new: nn.Module | None = None
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            # No output quantizer when the wrapper quantizes the net's output (last layer) or
            # an activation follows (it quantizes; TFLite fuses conv + ReLU).
            quantize_output = child is not last and not _followed_by_activation(module,
                                                                                 child_name)
            new = _quant_layer(
                child, scheme, bits.weight,
                output_quant=_QUANTIZERS[scheme.scaling][0] if quantize_output else None,
                output_bits=bits.act if quantize_output else None,
            )
        elif isinstance(child, _ACTIVATIONS):
            new = _quant_activation(child, scheme, bits.act)
        elif isinstance(child, _AVG_POOLS):
            new = QuantOutput(child, _act_quant(scheme, bits.act, signed=True))
        else:
            _swap(child, f"{name}.", scheme, last)
            if any(getattr(child, flag, False) for flag in RESIDUAL_FLAGS):
                new = QuantOutput(child, _act_quant(scheme, bits.act, signed=True))
        if new is not None:
            setattr(module, child_name, new)


def _is_layer(module: nn.Module) -> bool:
    return isinstance(module, (QuantConv2d, QuantLinear))


def _output_quantizer(module: nn.Module) -> nn.Module | None:
    """The quantizer that produced ``module``'s output, if its output is quantized."""
    if isinstance(module, (QuantIdentity, QuantReLU)):
        return module.act_quant
    if _is_layer(module) and module.output_quant.is_quant_enabled:
        return module.output_quant
    return None


@torch.no_grad()
def _input_quantizers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> dict[nn.Module, Any]:
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
    hooks += [m.register_forward_pre_hook(before) for m in model.modules() if _is_layer(m)]
    try:
        model.eval()
        model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return consumers


def _link_inputs(model: nn.Module, inputs: tuple[torch.Tensor, ...], scheme: QuantScheme) -> None:
    """Give every layer the quantizer of its input, so that its bias is quantized to int32.

    The layer shares the upstream quantizer (same scale: re-quantizing is exact), so the graph
    computes what an integer runtime computes. A layer whose input is not the output of one
    quantizer (e.g. a concatenation of two inputs) gets its own signed input quantizer.
    """
    upstream = _input_quantizers(model, inputs)
    parents = {id(child): (parent, name) for parent in model.modules()
               for name, child in parent.named_children()}
    for layer, quantizer in upstream.items():
        parent, attr = parents[id(layer)]
        output_quant = layer.output_quant if layer.output_quant.is_quant_enabled else None
        bits = int(layer.weight_quant.bit_width())
        if quantizer is None:
            quantizer = _QUANTIZERS[scheme.scaling][0].let(bit_width=scheme.default.act)
        with warnings.catch_warnings():
            # Brevitas warns that its own input_* defaults go unused when a quantizer is shared
            warnings.filterwarnings("ignore", "Keyword arguments are being passed")
            setattr(parent, attr, _quant_layer(layer, scheme, bits, output_quant=output_quant,
                                               input_quant=quantizer))


def _output_layer(net: nn.Module, inputs: tuple[torch.Tensor, ...]) -> nn.Module | None:
    """The conv/linear layer whose output *is* the net's output (``None`` if none is)."""
    outputs: dict[int, nn.Module] = {}
    hooks = [
        m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(id(out), mod))
        for m in net.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            out = net(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return outputs.get(id(out))


def _check_fully_quantized(net: nn.Module) -> None:
    float_layers = [
        name for name, m in net.named_modules()
        if type(m) in (nn.Conv2d, nn.Linear) or isinstance(m, _BatchNorm)
    ]
    if float_layers:
        raise ValueError(f"layers left unquantized: {float_layers[:5]}")


# ------------------------------------------------------------------------ the wrapper
class BrevitasNet(nn.Module):
    """The Brevitas-quantized version of a float gaze net, with the same inputs and output.

    ``float_net`` is the float net's Hydra config (how a checkpoint rebuilds it) or a float
    module (its weights are used). ``input_keys`` and the forward signature are those of the
    float net; the output is ``(B, 2)`` gaze in cm, a float tensor. See :class:`QuantScheme`
    for the other arguments.

    Module names inside ``net`` are the float net's, except that convolutions keep their
    position after BN folding and residual blocks / pools gain a ``.module`` level.
    """

    def __init__(
        self,
        float_net: Mapping[str, Any] | nn.Module,
        weight_bits: int = 8,
        act_bits: int = 8,
        layer_bits: Mapping[str, Any] | None = None,
        input_bits: int = 8,
        output_bits: int | None = 8,
        per_channel: bool = True,
        scaling: str = "po2",
    ) -> None:
        super().__init__()
        self.scheme = QuantScheme(weight_bits, act_bits, layer_bits, input_bits, output_bits,
                                  per_channel, scaling)
        if isinstance(float_net, nn.Module):
            net = copy.deepcopy(float_net)
        else:
            net = instantiate(dict(float_net))
        net.eval()
        self.input_keys: tuple[str, ...] = tuple(net.input_keys)
        shapes = getattr(net, "input_shapes", None)
        if shapes is None:
            raise ValueError(f"{type(net).__name__} must expose input_shapes to be quantized")
        self.input_shapes = dict(shapes)
        self.scheme.check_prefixes(name for name, _ in net.named_modules())

        fold_batchnorm(net)
        dummy = tuple(torch.zeros(1, *self.input_shapes[k]) for k in self.input_keys)
        last = _output_layer(net, dummy)
        _swap(net, "", self.scheme, last)
        _check_fully_quantized(net)
        self.net = net
        self.input_quant = nn.ModuleDict(
            {k: _act_quant(self.scheme, self.scheme.input_bits, signed=True)
             for k in self.input_keys}
        )
        self.output_quant = (
            _act_quant(self.scheme, self.scheme.output_bits, signed=True)
            if self.scheme.output_bits is not None else nn.Identity()
        )
        _link_inputs(self, dummy, self.scheme)

    def forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        quantized = [
            self.input_quant[k](x) if x is not None else None
            for k, x in zip(self.input_keys, inputs, strict=False)
        ]
        return self.output_quant(self.net(*quantized))

    def forward_with_features(self, *inputs: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the float net's penultimate features, as quantized
        activations (for per-person calibration); ``forward`` is this pass's first output."""
        if not hasattr(self.net, "forward_with_features"):
            raise TypeError(f"{type(self.net).__name__} does not expose its penultimate "
                            "features (forward_with_features)")
        quantized = [
            self.input_quant[k](x) if x is not None else None
            for k, x in zip(self.input_keys, inputs, strict=False)
        ]
        gaze, feats = self.net.forward_with_features(*quantized)
        return self.output_quant(gaze), feats

    @property
    def kernel_bits(self) -> dict[str, int]:
        """Weight width of each quantized layer, by name in this module (for ``footprint``)."""
        return {name: int(m.weight_quant.bit_width())
                for name, m in self.named_modules() if _is_layer(m)}

    @property
    def output_step(self) -> float | None:
        """The output's quantization step in cm (``None`` when the output is not quantized)."""
        if not isinstance(self.output_quant, QuantIdentity):
            return None
        return float(self.output_quant.act_quant.scale().detach())

    def load_float_weights(self, float_net: nn.Module) -> None:
        """Take the weights of a trained float net (same config), folding its batch norm.

        Activation scales are left as they are: calibrate afterwards.
        """
        donor = BrevitasNet(float_net, **self.scheme.as_dict())
        ours = {k: v for k, v in self.state_dict().items() if not _is_quantizer_state(k)}
        theirs = {k: v for k, v in donor.state_dict().items() if not _is_quantizer_state(k)}
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
        if missing or unexpected or shapes:
            raise ValueError(
                "the float net does not match the quantized net's float_net config: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {shapes[:5]}"
            )
        self.load_state_dict(theirs, strict=False)


def _is_quantizer_state(key: str) -> bool:
    return key.split(".")[-1] not in ("weight", "bias") or "_quant." in key


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Any], forward=None) -> int:
    """Post-training calibration of the activation scales of ``model`` (no weight update).

    Every activation quantizer records the 99.999th percentile of its float input over
    ``batches`` (Brevitas' default statistic), then fixes its scale; weights are untouched.
    ``forward(model, batch)`` runs one batch (default ``model(batch)``). Returns the number of
    batches seen.
    """
    forward = forward or (lambda m, b: m(b))
    was_training = model.training
    model.eval()
    seen = 0
    with calibration_mode(model):
        for batch in batches:
            forward(model, batch)
            seen += 1
    model.train(was_training)
    if seen == 0:
        raise ValueError("calibration needs at least one batch")
    return seen

