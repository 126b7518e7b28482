"""TinyTracker (arXiv:2307.07813) and TinyTrackerS (arXiv:2308.12313) gaze regressors.

Both map a face crop (optionally with TinyTracker's 2-channel grid embedding stacked on the
channels) to the gaze point in centimetres, GazeCapture camera coordinates ``(XCam, YCam)``.

The architectures follow the authors' released TFLite files layer for layer (``TinyTracker.tflite``
and ``TinyTrackerS.tflite`` of the public ``pbonazzi/tinytracker`` repository; their Keras
definitions are ``src/TinyTrackerTF.py`` and ``src/TinyTrackerS.py``). Each class docstring lists
the TFLite operator <-> module correspondence, for importing those weights. Three things an
importer has to handle, because PyTorch and TFLite differ there, not the architectures:

* **Batch norm** is folded into the preceding convolution in the TFLite files.
* **Padding of stride-2 3x3 convolutions**: TF "SAME" (and Keras' ``correct_pad`` + ``VALID`` in
  MobileNetV3) pads an even-sized input by 0 on the top/left and 1 on the bottom/right; here
  (torchvision's ``Conv2dNormActivation``) it is 1 on every side. Output sizes agree, values are
  shifted by one pixel. Odd sizes (7 -> 4 at 112x112) pad symmetrically in both.
  ``padding="tf_same"`` reproduces TF's padding (:class:`TFSamePadded`) with the same
  parameters and state-dict keys; the default ``"symmetric"`` keeps PyTorch's.
* **Flatten order** (TinyTracker only): TFLite reshapes an NHWC ``(1, 4, 4, 2)`` tensor, this
  module flattens NCHW ``(1, 2, 4, 4)``. Column ``(h * W + w) * C + c`` of the TFLite ``dense``
  kernel is column ``c * H * W + h * W + w`` of ``fc[0].weight``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

GRID_EMBEDDING_CHANNELS = 2
OUTPUT_ACTIVATIONS = ("none", "tanh")
PADDING_MODES = ("symmetric", "tf_same")
# The released TinyTrackerS file concatenates this constant grid (x and y linspaces over
# [-0.1, 0.1], the authors' ``bakedModel``) to the grey input; see TinyTrackerS.
BAKED_GRID_RANGE = (-0.1, 0.1)

# Keras BatchNormalization uses epsilon=1e-3 (both nets); the epsilon matters when importing
# weights. Momentum is PyTorch's default 0.1, not torchvision's MobileNetV3 0.01 (Keras' 0.99):
# with 0.01 the running statistics still carry ~15% of their initial values after 200 steps,
# so a short run evaluates far worse in eval mode than it trains (seen: 5.0 cm vs 1.7 cm).
_norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.1)

# Keras MobileNetV3Small stack (keras/applications/mobilenet_v3.py, ``MobileNetV3Small``):
# (expansion ratio relative to the block's input channels, output filters before alpha, stride).
# ``minimalistic=True`` makes every kernel 3x3, every activation ReLU and drops squeeze-excite.
_MOBILENET_V3_SMALL_STACK: tuple[tuple[float, int, int], ...] = (
    (1.0, 16, 2),
    (72 / 16, 24, 2),
    (88 / 24, 24, 1),
    (4.0, 40, 2),
    (6.0, 40, 1),
    (6.0, 40, 1),
    (3.0, 48, 1),
    (3.0, 48, 1),
    (6.0, 96, 2),
    (6.0, 96, 1),
    (6.0, 96, 1),
)
_MOBILENET_V3_STEM_CHANNELS = 16  # not scaled by alpha in Keras
_MOBILENET_V3_LAST_EXPANSION = 6  # Conv_1: 6x the last block's output channels (576 at alpha=1)


def _divisible_by_8(channels: float) -> int:
    """Keras ``_depth`` / torchvision ``_make_divisible`` with divisor 8 (the same function)."""
    return InvertedResidualConfig.adjust_channels(channels, 1.0)


def _stride2_output_size(size: int, n_stride2: int) -> int:
    """Spatial size after ``n_stride2`` 3x3 stride-2 "same" convolutions: ceil(size / 2) each."""
    for _ in range(n_stride2):
        size = (size + 1) // 2
    return size


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TF "SAME": the odd pixel, if any, goes after."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class TFSamePadded(nn.Sequential):
    """A conv(-norm-activation) block padded like TF "SAME" instead of symmetrically.

    Holds the children of the block it replaces under the same names, so parameters and
    state-dict keys are unchanged; the convolution's own padding is set to 0 and the input is
    padded here, the extra row/column (even sizes, stride 2) at the bottom/right.
    """

    def __init__(self, block: nn.Sequential) -> None:
        super().__init__(*block)
        conv = self[0]
        if not isinstance(conv, nn.Conv2d) or conv.dilation != (1, 1):
            raise ValueError("TFSamePadded wraps a block starting with an undilated Conv2d")
        conv.padding = (0, 0)
        self.out_channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self[0]
        top, bottom = tf_same_pads(x.shape[-2], conv.kernel_size[0], conv.stride[0])
        left, right = tf_same_pads(x.shape[-1], conv.kernel_size[1], conv.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


def use_tf_same_padding(root: nn.Module) -> None:
    """Wrap every strided conv block under ``root`` in :class:`TFSamePadded`, in place."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.Sequential)
                and not isinstance(child, TFSamePadded)
                and len(child) > 0
                and isinstance(child[0], nn.Conv2d)
                and max(child[0].stride) > 1
            ):
                setattr(parent, name, TFSamePadded(child))


class MobileNetV3SmallMinimalistic(nn.Module):
    """Keras ``MobileNetV3Small(minimalistic=True, include_top=False)``, from torchvision blocks.

    Channels follow Keras' width rule for ``alpha`` (``width_mult``): the 16-channel stem is not
    scaled, block outputs are ``_depth(filters * alpha)`` and expansions are computed from each
    block's actual input channels, so alpha != 1 reproduces Keras rather than torchvision.
    ``include_preprocessing`` is off (the authors rescale inputs outside the net).

    Input ``(B, 3, H, W)`` -> output ``(B, out_channels, ceil(H/32), ceil(W/32))``;
    ``out_channels`` is 576 at ``width_mult=1``.

    ``features`` indices match torchvision's ``mobilenet_v3_small().features``: 0 stem, 1-11
    inverted residuals, 12 the last 1x1 convolution (Keras ``Conv_1``).
    """

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                _MOBILENET_V3_STEM_CHANNELS,
                kernel_size=3,
                stride=2,
                norm_layer=_norm_layer,
                activation_layer=nn.ReLU,
            )
        ]
        in_ch = _MOBILENET_V3_STEM_CHANNELS
        for ratio, filters, stride in _MOBILENET_V3_SMALL_STACK:
            out_ch = InvertedResidualConfig.adjust_channels(filters, width_mult)
            expanded = _divisible_by_8(in_ch * ratio)
            # width_mult=1.0 here: the channels above are already Keras-rounded
            cnf = InvertedResidualConfig(in_ch, 3, expanded, out_ch, False, "RE", stride, 1, 1.0)
            layers.append(InvertedResidual(cnf, _norm_layer))
            in_ch = out_ch
        self.out_channels = _divisible_by_8(in_ch * _MOBILENET_V3_LAST_EXPANSION)
        layers.append(
            Conv2dNormActivation(
                in_ch,
                self.out_channels,
                kernel_size=1,
                norm_layer=_norm_layer,
                activation_layer=nn.ReLU,
            )
        )
        self.features = nn.Sequential(*layers)
        self.n_stride2 = 1 + sum(s == 2 for _, _, s in _MOBILENET_V3_SMALL_STACK)

    def output_size(self, image_size: int) -> int:
        """Side of the output feature map for a square ``image_size`` input."""
        return _stride2_output_size(image_size, self.n_stride2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class ExpandedInvertedResidual(nn.Module):
    """MobileNetV2-style block of TinyTrackerS: 1x1 expand, 3x3 depthwise, 1x1 linear project.

    Unlike torchvision's blocks the expand convolution is kept even at expansion 1, and the
    expansion multiplies the block's *output* channels (``filters * expansion`` in the authors'
    ``inverted_residual_block``). Convolutions have biases, as Keras' ``Conv2D`` default; ReLU6.
    Residual when ``stride == 1`` and input and output channels match.

    ``(B, in_channels, H, W)`` -> ``(B, out_channels, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = out_channels * expansion
        conv = partial(Conv2dNormActivation, norm_layer=_norm_layer, bias=True)
        self.block = nn.Sequential(
            conv(in_channels, hidden, kernel_size=1, activation_layer=nn.ReLU6),
            conv(
                hidden,
                hidden,
                kernel_size=3,
                stride=stride,
                groups=hidden,
                activation_layer=nn.ReLU6,
            ),
            conv(hidden, out_channels, kernel_size=1, activation_layer=None),
        )
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


# TinyTrackerS body, from the released TFLite file (== ``lightweight_mobilenetv3`` in the
# authors' src/TinyTrackerS.py, without its squeeze-excite, which the released file does not
# contain): (output filters, expansion relative to the output, stride).
_TINYTRACKER_S_STACK: tuple[tuple[int, int, int], ...] = (
    (8, 1, 2),
    (16, 6, 2),
    (24, 6, 1),
    (32, 6, 2),
    (64, 6, 1),
)
_TINYTRACKER_S_STEM_CHANNELS = 8
_TINYTRACKER_S_LAST_CHANNELS = 128


class TinyTrackerSBackbone(nn.Module):
    """TinyTrackerS feature extractor: 3x3/2 stem, five inverted residuals, 1x1 to 128, ReLU6.

    ``(B, in_channels, H, W)`` -> ``(B, 128 * width_mult, ceil(H/16), ceil(W/16))``
    (``(B, 128, 6, 6)`` at 96x96).
    """

    def __init__(self, in_channels: int, width_mult: float = 1.0) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        conv = partial(
            Conv2dNormActivation, norm_layer=_norm_layer, bias=True, activation_layer=nn.ReLU6
        )
        in_ch = _divisible_by_8(_TINYTRACKER_S_STEM_CHANNELS * width_mult)
        layers: list[nn.Module] = [conv(in_channels, in_ch, kernel_size=3, stride=2)]
        for filters, expansion, stride in _TINYTRACKER_S_STACK:
            out_ch = _divisible_by_8(filters * width_mult)
            layers.append(ExpandedInvertedResidual(in_ch, out_ch, expansion, stride))
            in_ch = out_ch
        self.out_channels = _divisible_by_8(_TINYTRACKER_S_LAST_CHANNELS * width_mult)
        layers.append(conv(in_ch, self.out_channels, kernel_size=1))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


MIN_IMAGE_SIZE = 32


class _GazeRegressor(nn.Module):
    """Shared input handling and output head of TinyTracker and TinyTrackerS.

    Subclasses build ``fc`` (the feature MLP), ``dropout`` and ``head`` (feature -> 2) and
    implement ``embed`` (stacked input -> ``(B, feature_dim)``).
    """

    feature_dim: int

    def __init__(
        self,
        in_channels: int,
        grid_embedding: bool,
        image_size: int,
        output_activation: str,
        output_scale_cm: float,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("image_size", image_size)
        if image_size < MIN_IMAGE_SIZE:
            # Five stride-2 stages: below 32 px the last stages see a single pixel.
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        if output_scale_cm <= 0:
            raise ValueError(f"output_scale_cm must be > 0, got {output_scale_cm}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.padding = padding
        # A constant grid embedding baked into the model (TinyTrackerS' released file); None
        # buffers are not saved, so checkpoints without one are unchanged.
        self.register_buffer("baked_grid", None)
        self.in_channels = in_channels
        self.grid_embedding = grid_embedding
        self.image_size = image_size
        self.output_activation = output_activation
        self.output_scale_cm = float(output_scale_cm)
        self.input_keys: tuple[str, ...] = (
            ("face", "grid_embedding") if grid_embedding else ("face",)
        )

    @property
    def stacked_channels(self) -> int:
        """Channels after stacking the optional grid embedding onto the face."""
        return self.in_channels + (GRID_EMBEDDING_CHANNELS if self.grid_embedding else 0)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each input, in ``input_keys`` order (for ``footprint``, export)."""
        shapes = {"face": (self.in_channels, self.image_size, self.image_size)}
        if "grid_embedding" in self.input_keys:
            shapes["grid_embedding"] = (GRID_EMBEDDING_CHANNELS, self.image_size, self.image_size)
        return shapes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _finish(self) -> None:
        """Subclasses call this last: applies ``padding`` to the built layers."""
        if self.padding == "tf_same":
            use_tf_same_padding(self)

    def _bake_grid_embedding(self) -> None:
        """Take the grid embedding from the ``baked_grid`` buffer instead of an input."""
        if not self.grid_embedding:
            raise ValueError("baked_grid_embedding=True needs grid_embedding=True")
        side = self.image_size
        line = torch.linspace(*BAKED_GRID_RANGE, side)
        self.baked_grid = torch.stack((line.expand(side, side), line[:, None].expand(side, side)))
        self.input_keys = ("face",)

    def features(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)`` (after the hidden FC and its ReLU)."""
        return self.embed(self._stack_inputs(face, grid_embedding))

    def forward_with_features(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the penultimate features ``(B, feature_dim)`` of one pass
        (per-person calibration regresses on the features)."""
        feats = self.features(face, grid_embedding)
        out = self.head(self.dropout(feats))
        if self.output_activation == "tanh":
            # Authors' scheme: bounded output, times a fixed range (30 cm TinyTracker, 10 cm S)
            out = torch.tanh(out) * self.output_scale_cm
        return out, feats

    def forward(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``face (B, in_channels, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> ``(B, 2)`` cm."""
        return self.forward_with_features(face, grid_embedding)[0]

    def _stack_inputs(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None
    ) -> torch.Tensor:
        if face.dim() != 4 or face.shape[1] != self.in_channels:
            raise ValueError(
                f"face must be (B, {self.in_channels}, H, W) (in_channels={self.in_channels}), "
                f"got {tuple(face.shape)}"
            )
        if not self.grid_embedding:
            if grid_embedding is not None:
                raise ValueError(
                    "got a grid_embedding but the model was built with grid_embedding=False"
                )
            return face
        if grid_embedding is None and self.baked_grid is not None:
            grid_embedding = self.baked_grid.expand(face.shape[0], -1, -1, -1)
        if grid_embedding is None:
            raise ValueError(
                "the model was built with grid_embedding=True: pass grid_embedding (B, 2, H, W)"
            )
        if grid_embedding.shape[1] != GRID_EMBEDDING_CHANNELS:
            raise ValueError(
                f"grid_embedding must have {GRID_EMBEDDING_CHANNELS} channels, "
                f"got {tuple(grid_embedding.shape)}"
            )
        return torch.cat((face, grid_embedding), dim=1)


class TinyTracker(_GazeRegressor):
    """TinyTracker (Bonazzi et al., arXiv:2307.07813): 1x1 conv -> MobileNetV3-Small -> MLP.

    ``face (B, in_channels, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> gaze ``(B, 2)`` in cm.
    ``features`` gives the 128-d vector after ``fc`` (FC 128 + ReLU).

    Footprint at 112x112 RGB: 434,536 parameters (446,648 with BN running statistics, Keras'
    "total params") against the paper's 455k, and 13.99M MACs against its 11.8M. No input size
    gives 11.8M with the standard count: the last stage is ceil(S/32) wide, so the count jumps
    from 9.40M at 96 to 13.14M at 97. Counting only the 1x1 convolutions and dense layers gives
    11.67M, which may be what the paper counted. The layer table itself is the released one.

    Layers of the released ``TinyTracker.tflite`` (input 1x128x128x5 = RGB + grid embedding,
    Keras model ``i_tracker_model_tomtom``) and the module each maps to:

    ====  ======================================  ========================================
    op    TFLite (Keras name)                     module
    ====  ======================================  ========================================
    0     CONV_2D 1x1 5->3, bias (conv2d)         ``input_adapter``
    1     CONV_2D 3x3/2 3->16 +ReLU (Conv)        ``backbone.features[0]``
    2-4   PAD, DW 3x3/2 16 +ReLU, 1x1 16->16      ``backbone.features[1]`` (no expand)
          (expanded_conv)
    5-43  expanded_conv_1 ... _10: 1x1 expand     ``backbone.features[2..11]``, ``.block``
          +ReLU, [PAD], DW 3x3 +ReLU, 1x1         ``[0]`` expand, ``[1]`` depthwise,
          project, ADD where stride 1 and         ``[2]`` project
          in == out; expansions 72, 88, 96,
          240, 240, 120, 144, 288, 576, 576;
          outputs 24, 24, 40, 40, 40, 48, 48,
          96, 96, 96; stride 2 at _1, _3, _8
    44    CONV_2D 1x1 96->576 +ReLU (Conv_1)      ``backbone.features[12]``
    45    CONV_2D 1x1 576->2, bias (conv2d_1)     ``channel_reduce``
    46    RESHAPE (1,4,4,2) -> (1,32)             flatten (NCHW order, see module doc)
    47    FULLY_CONNECTED 32->128 +ReLU (dense)   ``fc[0]``
    48    FULLY_CONNECTED 128->2 (dense_1)        ``head``
    49    TANH (output x 30 = cm)                 ``output_activation="tanh"``
    ====  ======================================  ========================================

    Backbone convolutions have no bias (Keras MobileNetV3, ``use_bias=False``); their TFLite
    biases are the folded batch norms. The Keras model was built with
    ``include_preprocessing=False``, so there is no rescaling layer to reproduce.

    Args:
        in_channels: image channels, 3 (RGB) or 1 (grey).
        grid_embedding: also take the 2-channel grid embedding (the released file uses it).
        image_size: side of the square input; sets the size of the first FC layer
            (``2 * ceil(image_size / 32) ** 2`` inputs).
        width_mult: MobileNetV3 alpha, with Keras' channel rounding.
        output_activation: ``"none"`` (linear output in cm) or ``"tanh"``
            (``output_scale_cm * tanh``, the authors' choice).
        output_scale_cm: range of the tanh output; the authors use 30 cm.
        dropout: dropout probability before ``head`` (0 in the paper).
        padding: ``"symmetric"`` (PyTorch) or ``"tf_same"`` (TF "SAME" for strided
            convolutions, as in the released TFLite files; for imported weights).
    """

    def __init__(
        self,
        in_channels: int = 3,
        grid_embedding: bool = False,
        image_size: int = 112,
        width_mult: float = 1.0,
        output_activation: str = "none",
        output_scale_cm: float = 30.0,
        dropout: float = 0.0,
        padding: str = "symmetric",
    ) -> None:
        super().__init__(
            in_channels, grid_embedding, image_size, output_activation, output_scale_cm, padding
        )
        self.feature_dim = 128
        # The authors' ``conv_g``: lets the ImageNet backbone see 3 channels whatever the input.
        self.input_adapter = nn.Conv2d(self.stacked_channels, 3, kernel_size=1)
        self.backbone = MobileNetV3SmallMinimalistic(width_mult)
        # The authors' ``conv_fm``: 576 -> 2 channels keeps the flattened vector tiny (32 at 112)
        self.channel_reduce = nn.Conv2d(self.backbone.out_channels, 2, kernel_size=1)
        flat = 2 * self.backbone.output_size(image_size) ** 2
        self.fc = nn.Sequential(nn.Linear(flat, self.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, 2)
        self._finish()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked input ``(B, stacked_channels, S, S)`` -> features ``(B, 128)``."""
        side = x.shape[-1]
        x = torch.flatten(self.channel_reduce(self.backbone(self.input_adapter(x))), 1)
        if x.shape[1] != self.fc[0].in_features:
            raise ValueError(
                f"the model was built for image_size={self.image_size}, got {side}x{side} "
                "inputs; build it with the input size you feed"
            )
        return self.fc(x)


class TinyTrackerS(_GazeRegressor):
    """TinyTrackerS (Rüegg, Bonazzi, Ronco, arXiv:2308.12313), the Spresense model.

    ``face (B, 1, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> gaze ``(B, 2)`` in cm;
    ``features`` gives the 64-d vector after ``fc`` (FC 64 + ReLU).

    Paper: 85.8k parameters. This is *not* a slimmed MobileNetV3: the released
    ``TinyTrackerS.tflite`` is a small MobileNetV2-style net (ReLU6, biased convolutions, no
    squeeze-excite, global average pooling, FC 64). With the defaults (96x96 grey + grid
    embedding, as released) it has exactly 85,802 parameters (conv weights and biases, BN scale
    and shift) and 5.23M MACs.

    The released file takes a 96x96x1 grey image and concatenates a *constant* grid embedding
    (the authors' ``bakedModel``: x and y linspaces over [-0.1, 0.1], i.e. a face box centred in
    the frame) before the first convolution; feed that constant as ``grid_embedding`` to
    reproduce it. Its output is tanh; the authors' training scales it by 10 cm
    (``train_TinyTrackerS.py``), hence ``output_scale_cm=10``.

    ====  ========================================  ==================================
    op    TFLite (Keras name)                       module
    ====  ========================================  ==================================
    0     CONCATENATION grey + constant (1,96,96,2)  ``forward``'s channel stacking
    1     CONV_2D 3x3/2 3->8 +ReLU6 (conv2d)        ``backbone.features[0]``
    2-4   1x1 8->8 +ReLU6, DW 3x3/2 +ReLU6,          ``backbone.features[1].block[0..2]``
          1x1 8->8
    5-7   1x1 8->96, DW 3x3/2, 1x1 96->16           ``backbone.features[2]``
    8-10  1x1 16->144, DW 3x3/1, 1x1 144->24        ``backbone.features[3]``
    11-13 1x1 24->192, DW 3x3/2, 1x1 192->32        ``backbone.features[4]``
    14-16 1x1 32->384, DW 3x3/1, 1x1 384->64        ``backbone.features[5]``
    17    CONV_2D 1x1 64->128 +ReLU6                ``backbone.features[6]``
    18    MEAN over H, W (global average pool)      ``pool``
    19    FULLY_CONNECTED 128->64 +ReLU (dense)     ``fc[0]``
    20    FULLY_CONNECTED 64->2 (dense_1)           ``head``
    21    TANH                                      ``output_activation="tanh"``
    ====  ========================================  ==================================

    No residual additions occur: no stride-1 block keeps its channel count. All stride-2
    convolutions use TF "SAME" padding (see module docstring).

    Args are those of :class:`TinyTracker`; ``image_size`` only documents the expected input
    (global pooling accepts any size) and ``width_mult`` scales every channel count.
    ``baked_grid_embedding=True`` reproduces the released file's constant grid: the embedding
    is the ``baked_grid`` buffer ``(2, S, S)`` (saved with the weights; initialised to the
    linspaces above) and ``input_keys`` is just ``("face",)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        grid_embedding: bool = True,
        image_size: int = 96,
        width_mult: float = 1.0,
        output_activation: str = "none",
        output_scale_cm: float = 10.0,
        dropout: float = 0.0,
        padding: str = "symmetric",
        baked_grid_embedding: bool = False,
    ) -> None:
        super().__init__(
            in_channels, grid_embedding, image_size, output_activation, output_scale_cm, padding
        )
        self.feature_dim = 64
        self.backbone = TinyTrackerSBackbone(self.stacked_channels, width_mult)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(self.backbone.out_channels, self.feature_dim), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.feature_dim, 2)
        if baked_grid_embedding:
            self._bake_grid_embedding()
        self._finish()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked input ``(B, stacked_channels, S, S)`` -> features ``(B, 64)``."""
        return self.fc(torch.flatten(self.pool(self.backbone(x)), 1))


def _check_positive_int(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
