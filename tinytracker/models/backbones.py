"""The feature extractors of TinyTracker and TinyTrackerS, from torchvision blocks.

Channels and strides follow the authors' Keras definitions (Keras' ``MobileNetV3Small``,
``minimalistic=True``; the released TinyTrackerS file), including Keras' channel rounding.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.mobilenetv3 import InvertedResidual, InvertedResidualConfig
from torchvision.ops.misc import Conv2dNormActivation

# Keras BatchNormalization uses epsilon=1e-3 (both nets); the epsilon matters when importing
# weights. Momentum is PyTorch's default 0.1, not torchvision's MobileNetV3 0.01 (Keras' 0.99):
# with 0.01 the running statistics still carry ~15% of their initial values after 200 steps,
# so a short run evaluates far worse in eval mode than it trains (seen: 5.0 cm vs 1.7 cm).
norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.1)

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
                norm_layer=norm_layer,
                activation_layer=nn.ReLU,
            )
        ]
        in_ch = _MOBILENET_V3_STEM_CHANNELS
        for ratio, filters, stride in _MOBILENET_V3_SMALL_STACK:
            out_ch = InvertedResidualConfig.adjust_channels(filters, width_mult)
            expanded = _divisible_by_8(in_ch * ratio)
            # width_mult=1.0 here: the channels above are already Keras-rounded
            cnf = InvertedResidualConfig(in_ch, 3, expanded, out_ch, False, "RE", stride, 1, 1.0)
            layers.append(InvertedResidual(cnf, norm_layer))
            in_ch = out_ch
        self.out_channels = _divisible_by_8(in_ch * _MOBILENET_V3_LAST_EXPANSION)
        layers.append(
            Conv2dNormActivation(
                in_ch,
                self.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
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
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer, bias=True)
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
            Conv2dNormActivation, norm_layer=norm_layer, bias=True, activation_layer=nn.ReLU6
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
