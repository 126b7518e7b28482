"""TF "SAME" padding for imported TFLite weights.

TF "SAME" (and Keras' ``correct_pad`` + ``VALID`` in MobileNetV3) pads an even-sized input of a
stride-2 3x3 convolution by 0 on the top/left and 1 on the bottom/right; torchvision's
``Conv2dNormActivation`` pads 1 on every side. Output sizes agree, values are shifted by one
pixel. Odd sizes (7 -> 4 at 112x112) pad symmetrically in both. A net built with
``padding="tf_same"`` wraps its strided blocks in :class:`TFSamePadded`, with the same
parameters and state-dict keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


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
