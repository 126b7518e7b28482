"""Model footprint: parameters, multiply-accumulates and storage size, counted generically.

Conventions (the ones TinyTracker, arXiv:2307.07813, and most mobile-net papers use):

* **params**: every ``nn.Parameter``, trainable or frozen. Batch-norm running statistics are
  buffers, not parameters, so they are *not* counted (Keras' "total params" does count them as
  "non-trainable"; papers usually quote the figure without them).
* **MACs**: one dummy forward pass at batch 1 with hooks on every ``nn.Conv2d`` and ``nn.Linear``
  (subclasses included, so quantized wrappers count too). Convolution:
  ``k_h * k_w * C_in / groups * C_out * H_out * W_out``; linear: ``in_features * out_features``
  per output row. Batch norm, activations, pooling, additions and biases are ignored. A module
  called twice (iTracker's shared eye tower) is counted twice.
* **size_fp32_bytes**: ``4 * params``.
* **size_int8_bytes**: the weight tensors (parameters named ``weight`` with two or more
  dimensions: convolution and linear kernels) at ``weight_bits`` bits, every other parameter
  (biases, batch-norm scale and shift) at 32 bits. That mirrors TFLite's full-integer scheme,
  where biases are stored as int32 (scale = input scale * weight scale) because they are added to
  the int32 accumulator. Each tensor is rounded up to whole bytes, as a file stores it in its own
  buffer. Quantization scales, zero points and graph metadata are not included, and batch-norm
  parameters are counted although a converter folds them into the preceding convolution, so the
  figure is a slightly conservative estimate of the stored model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

DEFAULT_WEIGHT_BITS = 8
_ACCUMULATOR_BITS = 32  # bias and normalisation parameters, see module docstring


@dataclass
class Footprint:
    """What a model costs to store and to run once, at batch 1."""

    params: int
    macs: int
    size_fp32_bytes: int
    size_int8_bytes: int
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # 1x1 convolutions and fully connected layers only: the convention that reproduces the
    # TinyTracker paper's 11.8M MACs (11.67M); ``macs`` is the full standard count.
    macs_pointwise: int = 0


def count_params(model: nn.Module) -> int:
    """All parameters, trainable or not; buffers (BN running statistics) excluded."""
    return sum(p.numel() for p in model.parameters())


def _count_macs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[int, int]:
    """Multiply-accumulates of one ``model(*inputs)`` pass (Conv2d and Linear only), and those
    of its 1x1 convolutions and linear layers alone."""
    total = 0
    pointwise = 0

    def conv_hook(module: nn.Conv2d, _args: tuple, output: torch.Tensor) -> None:
        nonlocal total, pointwise
        k_h, k_w = module.kernel_size
        # output.numel() = B * C_out * H_out * W_out; each output element needs one MAC per tap
        macs = output.numel() * k_h * k_w * (module.in_channels // module.groups)
        total += macs
        if (k_h, k_w) == (1, 1):
            pointwise += macs

    def linear_hook(module: nn.Linear, _args: tuple, output: torch.Tensor) -> None:
        nonlocal total
        nonlocal pointwise
        total += output.numel() * module.in_features
        pointwise += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*inputs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total, pointwise


def quantized_size_bytes(model: nn.Module, weight_bits: int | Mapping[str, int] = 8) -> int:
    """Stored size with weight kernels at ``weight_bits`` and all other parameters at 32 bits.

    ``weight_bits`` is one width for every kernel, or a mapping from module name (as in
    ``model.named_modules()``) to width; kernels of modules not in the mapping use
    ``DEFAULT_WEIGHT_BITS``.
    """
    per_module = _resolve_weight_bits(model, weight_bits)
    total = 0
    seen: set[int] = set()  # a tied parameter is stored once
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            if _is_kernel(param_name, param):
                bits = per_module.get(module_name, DEFAULT_WEIGHT_BITS)
            else:
                bits = _ACCUMULATOR_BITS
            total += math.ceil(param.numel() * bits / 8)
    return total


def footprint(
    model: nn.Module,
    input_shapes: dict[str, tuple[int, ...]],
    weight_bits: int | dict[str, int] = 8,
) -> Footprint:
    """Parameters, MACs and sizes of ``model`` for one sample.

    Args:
        model: any module; if it has ``input_keys`` its inputs are passed in that order,
            otherwise in the order of ``input_shapes``.
        input_shapes: per-sample shape of each input, *without* the batch dimension, e.g.
            ``{"face": (3, 112, 112)}``. A batch dimension of 1 is added.
        weight_bits: kernel width for ``size_int8_bytes``; an int, or a dict from module name to
            bits (for mixed-precision wrappers).
    """
    keys = tuple(getattr(model, "input_keys", tuple(input_shapes)))
    missing = [k for k in keys if k not in input_shapes]
    if missing:
        raise ValueError(
            f"input_shapes has no entry for {missing}; the model takes {list(keys)}. "
            "Give the per-sample shape (no batch dimension) of every input."
        )
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs = tuple(torch.zeros((1, *input_shapes[k]), device=device) for k in keys)
    params = count_params(model)
    macs, pointwise = _count_macs(model, inputs)
    return Footprint(
        params=params,
        macs=macs,
        size_fp32_bytes=4 * params,
        size_int8_bytes=quantized_size_bytes(model, weight_bits),
        input_shapes={k: tuple(input_shapes[k]) for k in keys},
        macs_pointwise=pointwise,
    )


def _is_kernel(param_name: str, param: torch.Tensor) -> bool:
    # Conv/linear kernels are >= 2-D "weight"s; BN's 1-D "weight" is a per-channel scale that
    # TFLite folds into the int32 bias path, so it is not quantized to weight_bits.
    return param_name == "weight" and param.dim() >= 2


def _resolve_weight_bits(model: nn.Module, weight_bits: int | Mapping[str, int]) -> dict[str, int]:
    quantizable = {
        name
        for name, module in model.named_modules()
        for p_name, p in module.named_parameters(recurse=False)
        if _is_kernel(p_name, p)
    }
    if isinstance(weight_bits, int):
        _check_bits("weight_bits", weight_bits)
        return dict.fromkeys(quantizable, weight_bits)
    unknown = sorted(set(weight_bits) - quantizable)
    if unknown:
        raise ValueError(
            f"weight_bits names modules without a weight kernel: {unknown}. "
            f"Use names from model.named_modules(), e.g. {sorted(quantizable)[:3]}."
        )
    for name, bits in weight_bits.items():
        _check_bits(f"weight_bits[{name!r}]", bits)
    return dict(weight_bits)


def _check_bits(key: str, bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"{key} must be an integer from 1 to 32, got {bits!r}")
