"""Post-training quantization for the Sony IMX500 with Sony's Model Compression Toolkit (MCT).

The float gaze net is wrapped, never rewritten: :class:`TraceableGazeNet` calls the float
net's own layers in the float net's order, as one ``torch.fx``-traceable forward (MCT reads
a PyTorch model by fx tracing, which cannot follow the float net's Python input checks).
MCT then quantizes it for the IMX500 target platform (``edge-mdt-tpc``): 8-bit symmetric
per-channel weights, 8-bit power-of-two activation thresholds, batch norm folded, calibrated
on real training images. The result is exported as MCT's ONNX (``mct_quantizers`` custom
ops), the input of Sony's ``imxconv-pt`` converter.

Two of MCT's options on top (:class:`MctOptions`): *mixed precision*, where MCT's IMX500 target
(TPC 5.0) lets each convolution and linear layer keep its weights at 8, 4 or 2 bits and MCT
picks the assignment of least sensitivity whose weights memory (its own estimate: weights x
bits / 8, biases not counted) fits a budget; and *GPTQ*, gradient-based PTQ that fine-tunes the
weights' rounding against the float model on the calibration images.

The quantized model's output stays in centimetres: MCT quantizes activations with a
quantize-dequantize pair, so the last activation is an 8-bit grid *in cm* (its step is
``2 * threshold / 256``), and the converter records that scale for the camera to dequantize.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tinytracker.models.tf_padding import TFSamePadded, tf_same_pads
from tinytracker.models.tinytracker import TinyTracker, TinyTrackerS

log = logging.getLogger(__name__)

OUTPUT_NAME = "gaze_cm"
# TPC 5.0 is the IMX500 target of converter 3.17 and later (MCT maps SDSP 3.17/3.18 to it;
# edge-mdt-tpc's support table lists it for 3.17+); we pin converter 3.19.
DEFAULT_TPC_VERSION = "5.0"


class TraceableGazeNet(nn.Module):
    """TinyTracker / TinyTrackerS as one straight-line forward over the float net's layers.

    Build it with :func:`traceable`. Inputs are the float net's sensor inputs (``face`` or
    ``frame`` and, with grid embedding, ``grid_embedding``), stacked on channels as the float
    net stacks them; output ``(B, 2)`` gaze in cm, or for ``position="late"`` the
    penultimate features ``(B, feature_dim)`` (what ``sensor_net()`` computes). The layers
    are a deep copy of the float net's, so wrapping never changes the float model. TF "SAME"
    padded blocks (imported TFLite weights) get their padding fixed for the net's input size.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        if not isinstance(net, (TinyTracker, TinyTrackerS)):
            raise ValueError(f"{type(net).__name__} cannot be quantized for the IMX500 here; "
                             "TinyTracker and TinyTrackerS can (iTracker's four 224 px inputs "
                             "do not fit the sensor's single image input)")
        net = copy.deepcopy(net).eval()
        # the sensor's inputs: for position=late the face only (its face_box joins on the host)
        self.input_keys: tuple[str, ...] = tuple(getattr(net, "sensor_input_keys",
                                                         net.input_keys))
        self.input_shapes = {k: net.input_shapes[k] for k in self.input_keys}
        _fix_tf_same_padding(net, dict(net.input_shapes))
        # position=late: the sensor part ends at the penultimate features (the host head follows)
        self.features_only = getattr(net, "position", None) == "late"
        tail = [] if self.features_only else [net.dropout, net.head]
        if isinstance(net, TinyTracker):
            stages = [net.input_adapter, net.backbone, net.channel_reduce, nn.Flatten(1),
                      net.fc, *tail]
        else:
            stages = [net.backbone, net.pool, nn.Flatten(1), net.fc, *tail]
        self.body = nn.Sequential(*stages)
        self.register_buffer("baked_grid", None if net.baked_grid is None
                             else net.baked_grid.unsqueeze(0).clone())
        self.tanh_scale_cm = (net.output_scale_cm if net.output_activation == "tanh"
                              and not self.features_only else None)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.tanh_scale_cm is not None:
            out = torch.tanh(out) * self.tanh_scale_cm
        return out


# torch.fx traces ``type(module).forward`` with one placeholder per named argument, so the
# one- and two-input nets are two classes rather than one forward with optional arguments.
class _FaceOnly(TraceableGazeNet):
    def forward(self, face: torch.Tensor) -> torch.Tensor:
        if self.baked_grid is not None:  # TinyTrackerS' constant grid embedding
            # broadcast over the batch without reading its size, which fx cannot trace here
            grid = torch.zeros_like(face[:, :1]) + self.baked_grid
            face = torch.cat((face, grid), dim=1)
        return self._head(face)


class _FaceAndGrid(TraceableGazeNet):
    def forward(self, face: torch.Tensor, grid_embedding: torch.Tensor) -> torch.Tensor:
        return self._head(torch.cat((face, grid_embedding), dim=1))


def traceable(net: nn.Module) -> TraceableGazeNet:
    """The fx-traceable wrapper of a float TinyTracker / TinyTrackerS (see the class)."""
    keys = tuple(getattr(net, "sensor_input_keys", None) or getattr(net, "input_keys", ()))
    return (_FaceAndGrid if keys == ("face", "grid_embedding") else _FaceOnly)(net)


@torch.no_grad()
def _fix_tf_same_padding(net: nn.Module, shapes: dict[str, tuple[int, ...]]) -> None:
    """Replace each :class:`TFSamePadded` block by explicit zero padding + the same layers."""
    blocks = [(parent, name, child) for parent in net.modules()
              for name, child in parent.named_children() if isinstance(child, TFSamePadded)]
    if not blocks:
        return
    sizes: dict[int, tuple[int, int]] = {}
    hooks = [b.register_forward_pre_hook(
        lambda m, args: sizes.__setitem__(id(m), tuple(args[0].shape[-2:])))
        for _, _, b in blocks]
    try:
        net(*[torch.zeros(1, *shapes[k]) for k in shapes])
    finally:
        for h in hooks:
            h.remove()
    for parent, name, block in blocks:
        conv = block[0]
        height, width = sizes[id(block)]
        top, bottom = tf_same_pads(height, conv.kernel_size[0], conv.stride[0])
        left, right = tf_same_pads(width, conv.kernel_size[1], conv.stride[1])
        setattr(parent, name, nn.Sequential(nn.ZeroPad2d((left, right, top, bottom)), *block))


def target_platform(tpc_version: str = DEFAULT_TPC_VERSION):
    """MCT's description of the IMX500 (bit widths, fusing, supported ops)."""
    from edgemdt_tpc import get_target_platform_capabilities

    return get_target_platform_capabilities(tpc_version=str(tpc_version), device_type="imx500")


@dataclass(frozen=True)
class MctOptions:
    """How MCT quantizes: ``weights_memory_bytes`` (None: every layer at 8 bits) is the mixed
    precision budget of MCT's weights memory; ``gptq_epochs`` (0: plain PTQ) runs GPTQ, with
    MCT's Hessian-weighted sample-layer-attention loss when ``gptq_hessian`` (MCT's default;
    100 Hessian-estimate iterations per 32 images, minutes on a CPU) or else the plain MSE of
    the layers' outputs against the float model."""

    weights_memory_bytes: float | None = None
    gptq_epochs: int = 0
    gptq_hessian: bool = False


@dataclass(frozen=True)
class WeightsMemory:
    """MCT's weights memory of a net on the IMX500 target, in bytes: every layer at its
    default 8 bits, and every mixed-precision layer at its lowest bit width (2), the least a
    budget can reach."""

    eight_bit_bytes: float
    min_bytes: float


class BudgetUnreachable(ValueError):
    """A mixed-precision budget below what MCT can reach (MCT's reason in the message)."""


def _representative(calibration: Sequence[Sequence[torch.Tensor]]):
    if not calibration:
        raise ValueError("MCT needs at least one calibration batch")

    def representative() -> Iterator[list[torch.Tensor]]:
        for batch in calibration:
            yield [x.float() for x in batch]

    return representative


def weights_memory(net: nn.Module, calibration: Sequence[Sequence[torch.Tensor]],
                   tpc_version: str = DEFAULT_TPC_VERSION) -> WeightsMemory:
    """MCT's weights memory of ``net`` at 8 bits and at the lowest bit widths (a second or two).

    ``mct.core.pytorch_resource_utilization_data`` gives the 8-bit figure only; the minimum
    comes from the same calculator on the graph prepared for mixed precision (MCT 2.6's
    internals, pinned <2.7 in pyproject), as MCT's own search computes it before refusing a
    budget below it.
    """
    import model_compression_toolkit as mct
    from model_compression_toolkit.core.common.mixed_precision.resource_utilization_tools.\
        resource_utilization_calculator import (
            BitwidthMode,
            ResourceUtilizationCalculator,
            TargetInclusionCriterion,
        )
    from model_compression_toolkit.core.graph_prep_runner import graph_preparation_runner
    from model_compression_toolkit.core.pytorch.default_framework_info import DEFAULT_PYTORCH_INFO
    from model_compression_toolkit.core.pytorch.pytorch_implementation import (
        PytorchImplementation,
    )
    from model_compression_toolkit.target_platform_capabilities.targetplatform2framework.\
        attach2pytorch import AttachTpcToPytorch

    core = mct.core.CoreConfig()
    fqc = AttachTpcToPytorch().attach(target_platform(tpc_version),
                                      core.quantization_config.custom_tpc_opset_to_layer)
    impl = PytorchImplementation()
    graph = graph_preparation_runner(net.eval(), _representative(calibration),
                                     core.quantization_config, DEFAULT_PYTORCH_INFO, impl, fqc,
                                     core.bit_width_config, mixed_precision_enable=True)
    calculator = ResourceUtilizationCalculator(graph, impl, DEFAULT_PYTORCH_INFO)

    def memory(mode) -> float:
        return float(calculator.compute_resource_utilization(
            TargetInclusionCriterion.AnyQuantizedNonFused, mode).weights_memory)

    return WeightsMemory(eight_bit_bytes=memory(BitwidthMode.QMaxBit),
                         min_bytes=memory(BitwidthMode.QMinBit))


def quantize_for_imx500(net: TraceableGazeNet, calibration: Sequence[Sequence[torch.Tensor]],
                        tpc_version: str = DEFAULT_TPC_VERSION,
                        options: MctOptions = MctOptions()) -> nn.Module:
    """MCT post-training quantization of ``net``, calibrated on ``calibration`` batches.

    Each calibration batch holds the net's inputs in ``input_keys`` order. ``options``: mixed
    precision under a weights-memory budget, GPTQ; a budget MCT cannot reach raises
    :class:`BudgetUnreachable` with MCT's reason.
    """
    import model_compression_toolkit as mct

    representative = _representative(calibration)
    budget = None
    if options.weights_memory_bytes is not None:
        budget = mct.core.ResourceUtilization(weights_memory=float(options.weights_memory_bytes))
    # A fresh CoreConfig every call: MCT's default argument is one shared instance, and a
    # mixed-precision run switches mixed precision on in it for every later call.
    common = {"target_resource_utilization": budget, "core_config": mct.core.CoreConfig(),
              "target_platform_capabilities": target_platform(tpc_version)}
    try:
        if options.gptq_epochs > 0:
            quantized, _ = mct.gptq.pytorch_gradient_post_training_quantization(
                net.eval(), representative,
                gptq_config=mct.gptq.get_pytorch_gptq_config(
                    n_epochs=options.gptq_epochs,
                    use_hessian_based_weights=options.gptq_hessian,
                    use_hessian_sample_attention=options.gptq_hessian),
                **common)
        else:
            quantized, _ = mct.ptq.pytorch_post_training_quantization(
                in_module=net.eval(), representative_data_gen=representative, **common)
    except ValueError as err:  # MCT's mixed-precision search: "cannot be quantized to meet"
        if budget is not None and "resource utilization" in str(err):
            raise BudgetUnreachable(str(err)) from err
        raise
    return quantized.eval()


def weight_bits(quantized: nn.Module) -> dict[str, int]:
    """The bit width of each quantized layer's weights (kernel), by MCT's layer name."""
    from mct_quantizers import PytorchQuantizationWrapper

    bits: dict[str, int] = {}
    for name, module in quantized.named_modules():
        if isinstance(module, PytorchQuantizationWrapper) and "weight" in \
                module.weights_quantizers:
            bits[name] = int(module.weights_quantizers["weight"].num_bits)
    return bits


def weights_by_bits(quantized: nn.Module) -> dict[int, int]:
    """How many weights (kernel elements) each bit width holds."""
    counts: dict[int, int] = {}
    modules = dict(quantized.named_modules())
    for name, bits in weight_bits(quantized).items():
        counts[bits] = counts.get(bits, 0) + int(modules[name].layer.weight.numel())
    return dict(sorted(counts.items(), reverse=True))


@contextlib.contextmanager
def _legacy_onnx_exporter() -> Iterator[None]:
    """MCT calls ``torch.onnx.export`` with torch's default, which is now the dynamo exporter;
    MCT's custom quantizer ops are TorchScript symbolic functions: the legacy exporter."""
    original = torch.onnx.export
    torch.onnx.export = functools.partial(original, dynamo=False)
    try:
        yield
    finally:
        torch.onnx.export = original


def export_mct_onnx(quantized: nn.Module, path: str | Path,
                    sample: Sequence[torch.Tensor]) -> Path:
    """Write MCT's ONNX (``mct_quantizers`` quantizer ops) of a quantized model to ``path``."""
    import model_compression_toolkit as mct
    from model_compression_toolkit.exporter import (
        PytorchExportSerializationFormat,
        QuantizationFormat,
    )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def representative() -> Iterator[list[torch.Tensor]]:
        yield [x[:1].float() for x in sample]

    with _legacy_onnx_exporter():
        mct.exporter.pytorch_export_model(
            quantized, save_model_path=str(path), repr_dataset=representative,
            serialization_format=PytorchExportSerializationFormat.ONNX,
            quantization_format=QuantizationFormat.MCTQ, output_names=[OUTPUT_NAME])
    return path
