"""Post-training quantization for the Sony IMX500 with Sony's Model Compression Toolkit (MCT).

The float gaze net is wrapped, never rewritten: :class:`TraceableGazeNet` calls the float
net's own layers in the float net's order, as one ``torch.fx``-traceable forward (MCT reads
a PyTorch model by fx tracing, which cannot follow the float net's Python input checks).
MCT then quantizes it for the IMX500 target platform (``edge-mdt-tpc``): 8-bit symmetric
per-channel weights, 8-bit power-of-two activation thresholds, batch norm folded, calibrated
on real training images. The result is exported as MCT's ONNX (``mct_quantizers`` custom
ops), the input of Sony's ``imxconv-pt`` converter.

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


def quantize_for_imx500(net: TraceableGazeNet, calibration: Sequence[Sequence[torch.Tensor]],
                        tpc_version: str = DEFAULT_TPC_VERSION) -> nn.Module:
    """MCT post-training quantization of ``net``, calibrated on ``calibration`` batches.

    Each calibration batch holds the net's inputs in ``input_keys`` order.
    """
    import model_compression_toolkit as mct

    if not calibration:
        raise ValueError("MCT needs at least one calibration batch")

    def representative() -> Iterator[list[torch.Tensor]]:
        for batch in calibration:
            yield [x.float() for x in batch]

    quantized, _ = mct.ptq.pytorch_post_training_quantization(
        in_module=net.eval(), representative_data_gen=representative,
        target_platform_capabilities=target_platform(tpc_version))
    return quantized.eval()


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
