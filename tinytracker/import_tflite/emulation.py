"""The released files' int8 activations, emulated around the imported float net.

The authors' TFLite files quantize every activation tensor to int8 with a calibrated scale and
zero point. That rounding and clipping is part of what the released models compute: on real
faces the float net with their dequantized weights differs from the file by 0.8 cm on
average (up to 3.1 cm) for TinyTracker and 1.3 cm (up to 3.2 cm) for TinyTrackerS, whose
activation ranges are tight (its pooled features saturate at 0.51).
:class:`Int8Activations` fake-quantizes, with the file's own parameters, the input, the output
of every module that produces an int8 tensor in the file, and the final tanh; it then matches
the file within one output step (what remains is TFLite's fixed-point requantization;
``tests/test_import_tflite.py`` measures both). Rounding uses a straight-through gradient, so
the wrapper can also be fine-tuned (QAT with frozen scales).

Like ``tinytracker.quant``, this is a wrapper around the float model, not a fork of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from tinytracker.import_tflite.reader import Graph, Quantization, TFLiteFormatError

# Ops whose int8 output reuses the input's scale and zero point (checked on import).
SAME_QUANT_OPS = ("PAD", "RESHAPE", "CONCATENATION")
RESIDUAL_FLAGS = ("use_res_connect", "use_residual")  # torchvision / our inverted residuals


def fake_quant(x: torch.Tensor, scale: float, zero_point: int) -> torch.Tensor:
    """int8 quantize-dequantize with a straight-through gradient."""
    q = torch.clamp(torch.round(x / scale) + zero_point, -128, 127)
    return x + ((q - zero_point) * scale - x).detach()


class Int8Activations(nn.Module):
    """``float_net`` (Hydra config or module) with int8 activations at fixed points.

    Args:
        float_net: the imported float net.
        input_quant: ``[scale, zero_point]`` of the file's int8 input (all input channels).
        points: ``{module name in float_net: [scale, zero_point]}``, output quantization.
        output_quant: ``[scale, zero_point]`` of the int8 tanh output (``output_activation``
            must be ``"tanh"``); quantized as ``out / output_scale_cm``.
    """

    def __init__(self, float_net: Mapping[str, Any] | nn.Module, input_quant: Sequence[float],
                 points: Mapping[str, Sequence[float]],
                 output_quant: Sequence[float] | None = None) -> None:
        super().__init__()
        net = float_net if isinstance(float_net, nn.Module) else instantiate(dict(float_net))
        self.float_net = net
        self.input_keys: tuple[str, ...] = tuple(net.input_keys)
        self.input_shapes = dict(net.input_shapes)
        self.input_quant = (float(input_quant[0]), int(input_quant[1]))
        self.output_quant = None if output_quant is None else (float(output_quant[0]),
                                                               int(output_quant[1]))
        if self.output_quant is not None and net.output_activation != "tanh":
            raise ValueError("output_quant needs a net with output_activation='tanh'")
        modules = dict(net.named_modules())
        unknown = sorted(set(points) - set(modules))
        if unknown:
            raise ValueError(f"points name modules that float_net lacks: {unknown[:5]}")
        for name, (scale, zero) in points.items():
            modules[name].register_forward_hook(
                lambda _m, _i, out, s=float(scale), z=int(zero): fake_quant(out, s, z))

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self.float_net(*[fake_quant(x, *self.input_quant) for x in inputs])
        if self.output_quant is None:
            return out
        scale_cm = self.float_net.output_scale_cm
        return fake_quant(out / scale_cm, *self.output_quant) * scale_cm


def _pair(q: Quantization | None) -> list[float]:
    if q is None or q.scale.size != 1:
        raise TFLiteFormatError("expected a per-tensor quantized activation")
    return [float(q.scale[0]), int(q.zero_point[0])]


def int8_points(graph: Graph, net: nn.Module, weight_layers: Sequence[str]) -> dict[str, Any]:
    """``Int8Activations`` arguments for ``net``, from the file's activation tensors.

    ``weight_layers``: names of the Conv2d/Linear modules paired, in order, with the file's
    weight ops. Each op's (activated) output is the output of the conv-norm-activation block
    (or ``fc`` Sequential) the layer starts, else of the layer itself; ADD outputs are those of
    the residual blocks, MEAN outputs those of the average pools, in execution order.
    """
    modules = dict(net.named_modules())
    weight_ops = [op for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                        "FULLY_CONNECTED")]
    points: dict[str, list[float]] = {}
    for op, name in zip(weight_ops, weight_layers, strict=True):
        parent = name.rsplit(".", 1)[0] if "." in name else ""
        block = modules.get(parent)
        starts_block = isinstance(block, nn.Sequential) and next(iter(block)) is modules[name]
        points[parent if starts_block else name] = _pair(op.outputs[0].quant)
    residuals = [n for n, m in modules.items() if any(getattr(m, f, False) for f in RESIDUAL_FLAGS)]
    pools = [n for n, m in modules.items() if isinstance(m, nn.AdaptiveAvgPool2d)]
    for kind, names in (("ADD", residuals), ("MEAN", pools)):
        ops = [op for op in graph.ops if op.kind == kind]
        if len(ops) != len(names):
            raise TFLiteFormatError(f"{len(ops)} {kind} ops in the file, {len(names)} modules")
        points.update({n: _pair(op.outputs[0].quant) for op, n in zip(ops, names, strict=True)})
    known = {*weight_ops, *(op for op in graph.ops if op.kind in ("ADD", "MEAN"))}
    output_quant = None
    for op in graph.ops:
        if op in known or op.kind == "DEQUANTIZE":
            continue
        if op.kind == "TANH":
            output_quant = _pair(op.outputs[0].quant)
        elif op.kind not in SAME_QUANT_OPS or _pair(op.inputs[0].quant) != _pair(
                op.outputs[0].quant):
            raise TFLiteFormatError(f"op {op.index} ({op.kind}) cannot be emulated here")
    return {"input_quant": _pair(graph.inputs[0].quant), "points": points,
            "output_quant": output_quant}
