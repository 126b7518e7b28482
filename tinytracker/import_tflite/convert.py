"""Map the authors' released TinyTracker / TinyTrackerS TFLite graphs onto our PyTorch models.

:mod:`tinytracker.import_tflite.layer_tables` gives the operator <-> module tables. Here the
file's weight operators (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED) are paired, in graph
order, with the model's Conv2d/Linear modules in execution order; every pair's shapes and fused
activation are checked before anything is copied.

* Weights and biases are dequantized (per-channel scales and zero points).
* Batch norm is folded into the TFLite convolutions: each BN is set to the identity
  (weight 1, running mean 0, running variance ``1 - eps``, so ``var + eps`` is exactly 1) and
  the TFLite bias goes into the conv bias, or into the BN bias where the conv has none.
* Strided convolutions use TF "SAME" padding: the model is built with ``padding="tf_same"``.
  Explicit PAD operators (Keras' ``correct_pad``) are checked to be the same padding.
* The dense layer after a RESHAPE of an NHWC tensor gets its columns reordered to NCHW.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from tinytracker.import_tflite.reader import Graph, Op, Tensor, TFLiteFormatError
from tinytracker.models import registry
from tinytracker.models.tf_padding import tf_same_pads

# The models whose authors released TFLite weights (their registry cards say which file).
MODELS = registry.with_released_weights()
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
FUSED_ACTIVATIONS = {0: "none", 1: "relu", 3: "relu6"}  # TFLite ActivationFunctionType
# The preprocessing the released weights were trained with, from the authors' training
# pipeline (pbonazzi/tinytracker, src/ITrackerDataTF.py, dataset_preprocessing_grid):
# RGB from tf.image.decode_jpeg of the appleFace crop (grey: decode_jpeg(channels=1)), no
# flip, tf.image.resize (bilinear, no antialiasing), pixels image / 127.5 - 1, then
# concat([image, gridX, gridY]) with create_grid's grid embedding (authors_tf). Their
# convert_tflite.py calibrated the int8 input on exactly these floats: the file's input range
# is [-1.00, 1.08] (scale 0.008157 = 2.08 / 255, zero point -5), where 1.08 = 2 * 26 / 25 - 1
# is create_grid's largest value; our grid convention stops at 1. Their evaluate_tflite.py
# feeds int8 p - 128 instead (1.04 x the trained pixel scale, +0.037 at mid-grey) and their
# webcam demo mirrored BGR pixels p - 127.5 with a grid from the raw box: both differ from
# training, which we follow. tests/test_import_tflite.py checks the range and the tensors.
TRAINING_MEAN, TRAINING_STD = 0.5, 0.5  # (p / 255 - 0.5) / 0.5 == p / 127.5 - 1
TRAINING_GRID = "authors_tf"  # data.spec.GRID_CONVENTIONS
TRAINING_INTERPOLATION = "bilinear"  # data.spec.INTERPOLATIONS: tf.image.resize's default


@dataclass
class ImportedModel:
    name: str  # one of MODELS
    net_config: dict[str, Any]  # Hydra config of the net (``_target_`` ...)
    net: nn.Module  # weights loaded, eval mode
    input_spec: dict[str, Any]  # GazeModule.input_spec: the authors' training preprocessing
    input_scale: float  # int8 input quantization: real = scale * (q - zero_point)
    input_zero_point: int
    output_step_cm: float  # one step of the int8 tensor the float output is dequantized from
    pre_tanh_step_cm: float | None  # one step of the int8 tensor the TANH reads, times the range
    layer_names: list[str]  # our Conv2d/Linear modules, paired in order with the weight ops


def import_graph(graph: Graph, model: str = "auto",
                 output_scale_cm: float | None = None) -> ImportedModel:
    """Build the matching PyTorch model and load the file's weights into it."""
    if model != "auto" and model not in MODELS:
        raise ValueError(f"model must be auto or one of {MODELS}, got {model!r}")
    inp = _int8_input(graph)
    baked = _baked_grid(graph, inp)
    name, cfg, net, pairs = _matching_model(graph, inp, baked, model, output_scale_cm)
    _check_pads(graph)
    with torch.no_grad():
        for op, layer in pairs:
            _copy(graph, op, layer)
        if baked is not None:
            net.baked_grid.copy_(torch.from_numpy(baked))
    scale, zero = float(inp.quant.scale[0]), int(inp.quant.zero_point[0])
    out_scale = float(cfg["output_scale_cm"])
    return ImportedModel(
        name=name, net_config=cfg, net=net.eval(), input_spec=_input_spec(cfg),
        input_scale=scale, input_zero_point=zero,
        output_step_cm=_output_step(graph) * out_scale,
        pre_tanh_step_cm=_pre_tanh_step(graph, out_scale),
        layer_names=[layer.name for _, layer in pairs],
    )


def _matching_model(graph: Graph, inp: Tensor, baked: np.ndarray | None, model: str,
                    output_scale_cm: float | None
                    ) -> tuple[str, dict[str, Any], nn.Module, list[tuple[Op, _Layer]]]:
    """The first candidate model whose layers match the file's weight ops, layer by layer."""
    errors = []
    for name in MODELS if model == "auto" else (model,):
        cfg = _net_config(graph, inp, baked, name, output_scale_cm)
        if cfg is None:
            errors.append(f"{name}: does not take this input")
            continue
        net = instantiate(cfg).eval()
        try:
            return name, cfg, net, _pair_layers(graph, net)
        except TFLiteFormatError as err:
            errors.append(f"{name}: {err}")
    released = ", ".join(registry.card(n).released.file for n in MODELS)
    raise TFLiteFormatError(f"{graph.path} is not one of the released files ({released}): "
                            + "; ".join(errors))


def _int8_input(graph: Graph) -> Tensor:
    if len(graph.inputs) != 1:
        raise TFLiteFormatError(f"expected one input, {graph.path} has {len(graph.inputs)}")
    inp = graph.inputs[0]
    square_nhwc = len(inp.shape) == 4 and inp.shape[1] == inp.shape[2]
    if inp.dtype != "INT8" or inp.quant is None or not square_nhwc:
        raise TFLiteFormatError(f"expected an int8 NHWC square image input, {graph.path} has "
                                f"{inp.dtype} {inp.shape}")
    return inp


def _baked_grid(graph: Graph, inp: Tensor) -> np.ndarray | None:
    """The constant grid a first CONCATENATION appends to the input, as ``(2, S, S)``."""
    op = graph.ops[0]
    if op.kind != "CONCATENATION":
        return None
    first, *rest = op.inputs
    if first is None or first.index != inp.index or len(rest) != 1 or rest[0].data is None:
        raise TFLiteFormatError("expected CONCATENATION(input, constant grid) as first op")
    grid = rest[0].dequantized()
    if grid.shape[-1] != 2:
        raise TFLiteFormatError(f"the baked grid has shape {grid.shape}, expected 2 channels")
    return np.ascontiguousarray(grid[0].transpose(2, 0, 1))


def _net_config(graph: Graph, inp: Tensor, baked: np.ndarray | None, name: str,
                output_scale_cm: float | None) -> dict[str, Any] | None:
    side, channels = inp.shape[1], inp.shape[3]
    if baked is not None and name != "tinytracker_s":
        return None  # only TinyTrackerS bakes a grid
    stacked = channels + (0 if baked is None else 2)
    # 5 = RGB + grid, 3 = grey + grid (baked) or RGB, 1 = grey
    in_channels, grid = {5: (3, True), 3: (1, True) if baked is not None else (3, False),
                         1: (1, False)}.get(stacked, (None, None))
    if in_channels is None:
        raise TFLiteFormatError(f"unsupported input channels {channels} in {graph.path}")
    tanh = any(op.kind == "TANH" for op in graph.ops)
    card = registry.card(name)
    cfg = card.net_config(
        in_channels=in_channels, grid_embedding=grid, image_size=side,
        output_activation="tanh" if tanh else "none",
        output_scale_cm=float(output_scale_cm or card.defaults["output_scale_cm"]),
        padding="tf_same",
    )
    if baked is not None:
        cfg["baked_grid_embedding"] = True
    return cfg


def _input_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """The authors' training preprocessing (see :data:`TRAINING_MEAN`) as an input spec record;
    the int8 emulation then quantizes it with the file's own input scale and zero point."""
    return {
        "face_size": cfg["image_size"], "eye_size": 224, "grey": cfg["in_channels"] == 1,
        "grid_embedding": cfg["grid_embedding"],
        "mean": TRAINING_MEAN, "std": TRAINING_STD,
        "grid_convention": TRAINING_GRID, "interpolation": TRAINING_INTERPOLATION,
    }


@dataclass
class _Layer:
    name: str
    module: nn.Module  # Conv2d or Linear
    bn: nn.BatchNorm2d | None
    activation: str  # "none" | "relu" | "relu6"


def _execution_order(net: nn.Module) -> list[tuple[str, nn.Module]]:
    order: list[tuple[str, nn.Module]] = []
    leaves = [(n, m) for n, m in net.named_modules() if not list(m.children())]
    handles = [m.register_forward_hook(lambda mod, _i, _o, n=n: order.append((n, mod)))
               for n, m in leaves]
    try:
        with torch.no_grad():
            net(*[torch.zeros(1, *net.input_shapes[k]) for k in net.input_keys])
    finally:
        for h in handles:
            h.remove()
    return order


def _weight_layers(net: nn.Module) -> list[_Layer]:
    order = _execution_order(net)
    layers = []
    for i, (name, module) in enumerate(order):
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        j, bn = i + 1, None
        if j < len(order) and isinstance(order[j][1], nn.BatchNorm2d):
            bn, j = order[j][1], j + 1
        after = order[j][1] if j < len(order) else None
        act = {nn.ReLU: "relu", nn.ReLU6: "relu6"}.get(type(after), "none")
        layers.append(_Layer(name, module, bn, act))
    return layers


def _expected_shape(layer: _Layer) -> tuple[str, tuple[int, ...]]:
    m = layer.module
    if isinstance(m, nn.Linear):
        return "FULLY_CONNECTED", (m.out_features, m.in_features)
    k = m.kernel_size
    if m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        return "DEPTHWISE_CONV_2D", (1, k[0], k[1], m.out_channels)
    return "CONV_2D", (m.out_channels, k[0], k[1], m.in_channels // m.groups)


def _pair_layers(graph: Graph, net: nn.Module) -> list[tuple[Op, _Layer]]:
    ops = [op for op in graph.ops if op.kind in WEIGHT_OPS]
    layers = _weight_layers(net)
    if len(ops) != len(layers):
        raise TFLiteFormatError(f"{len(ops)} weight ops in the file, {len(layers)} layers")
    for op, layer in zip(ops, layers, strict=True):
        kind, shape = _expected_shape(layer)
        found = op.inputs[1].shape
        if op.kind != kind or found != shape:
            raise TFLiteFormatError(f"op {op.index} is {op.kind} {found}, layer {layer.name} "
                                    f"needs {kind} {shape}")
        fused = FUSED_ACTIVATIONS.get(op.options.get("fusedActivationFunction", 0), "other")
        if fused != layer.activation:
            raise TFLiteFormatError(f"op {op.index} has activation {fused}, layer "
                                    f"{layer.name} is followed by {layer.activation}")
    return list(zip(ops, layers, strict=True))


def _copy(graph: Graph, op: Op, layer: _Layer) -> None:
    weight = op.inputs[1].dequantized()
    if op.kind == "CONV_2D":
        weight = weight.transpose(0, 3, 1, 2)  # OHWI -> OIHW
    elif op.kind == "DEPTHWISE_CONV_2D":
        weight = weight.transpose(3, 0, 1, 2)  # 1HWC -> C1HW
    else:
        weight = _nchw_columns(graph, op, weight)
    bias_t = op.inputs[2] if len(op.inputs) > 2 else None
    bias = bias_t.dequantized() if bias_t is not None else np.zeros(weight.shape[0], np.float32)
    module = layer.module
    module.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
    bn_bias = torch.from_numpy(bias)
    if module.bias is not None:
        module.bias.copy_(bn_bias)
        bn_bias = torch.zeros_like(bn_bias)
    elif layer.bn is None and np.any(bias):
        raise TFLiteFormatError(f"op {op.index} has a bias but {layer.name} has no bias or BN")
    if layer.bn is not None:
        bn = layer.bn
        bn.weight.fill_(1.0)
        bn.bias.copy_(bn_bias)
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)  # var + eps == 1 exactly in float32


def _nchw_columns(graph: Graph, op: Op, weight: np.ndarray) -> np.ndarray:
    """Dense kernel columns after a RESHAPE of NHWC ``(1, H, W, C)``, reordered to NCHW."""
    producer = graph.producer(op.inputs[0])
    if producer is None or producer.kind != "RESHAPE" or len(producer.inputs[0].shape) != 4:
        return weight
    _, h, w, c = producer.inputs[0].shape
    return weight.reshape(weight.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(
        weight.shape[0], -1)


def _check_pads(graph: Graph) -> None:
    """Every explicit PAD must equal TF "SAME" for the strided VALID op it feeds."""
    for op in (o for o in graph.ops if o.kind == "PAD"):
        pads = op.inputs[1].data.reshape(4, 2) if op.inputs[1].data is not None else None
        user = next((o for o in graph.ops if any(t is op.outputs[0] for t in o.inputs)),
                    None)
        if pads is None or user is None or user.kind not in WEIGHT_OPS:
            raise TFLiteFormatError(f"PAD op {op.index} does not feed a convolution")
        size = op.inputs[0].shape[1]
        kernel, stride = user.inputs[1].shape[1], int(user.options.get("strideH", 1))
        want = tf_same_pads(size, kernel, stride)
        if tuple(pads[1]) != want or tuple(pads[2]) != want or pads[0].any() or pads[3].any():
            raise TFLiteFormatError(f"PAD op {op.index} pads {pads.tolist()}, not TF 'SAME' "
                                    f"{want} for the op it feeds")


def _output_step(graph: Graph) -> float:
    """Scale of the int8 tensor that the float output is dequantized from."""
    op = graph.producer(graph.outputs[0])
    if op is None or op.kind != "DEQUANTIZE" or op.inputs[0].quant is None:
        raise TFLiteFormatError("expected the float output to come from a DEQUANTIZE op")
    return float(op.inputs[0].quant.scale[0])


def _pre_tanh_step(graph: Graph, out_scale: float) -> float | None:
    tanh = next((op for op in graph.ops if op.kind == "TANH"), None)
    if tanh is None or tanh.inputs[0].quant is None:
        return None
    return float(tanh.inputs[0].quant.scale[0]) * out_scale
