"""Batch norm folded into the preceding convolution, as TFLite and the IMX500 converter do.

QAT then trains exactly the weights that are deployed, and per-channel scales are computed on
the folded kernels; the exported graph has no BN, so PyTorch and ONNX Runtime run the same
arithmetic. BN statistics are frozen from then on, which is what QAT fine-tuning usually does
anyway (Jacob et al., CVPR 2018, sec. 3.2).

The arithmetic is Brevitas' own (``brevitas.nn.utils.merge_bn``, what its ``MergeBatchNorm``
graph transform calls). Finding the pairs is ours: ``MergeBatchNorm`` and
``preprocess_for_quantize`` work on a ``torch.fx`` graph, and our nets cannot be traced (their
forward checks its inputs' shapes in Python, which fx cannot follow), and tracing would replace
the net by a ``GraphModule`` without its ``input_keys``, ``input_shapes`` and
``forward_with_features``. In every net here a BN follows its convolution inside one
``nn.Sequential`` (torchvision's ``Conv2dNormActivation``), which is where we look.
"""

from __future__ import annotations

import torch
from brevitas.nn.utils import merge_bn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every ``Conv2d -> BatchNorm2d`` pair of an ``nn.Sequential`` into the conv, in place.

    The BN is replaced by ``nn.Identity`` (so later modules keep their positions and names);
    the conv gains a bias if it had none. Uses the running statistics (inference behaviour).
    A BN that does not follow a conv is an error.
    """
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(1, len(seq)):
            conv, bn = seq[i - 1], seq[i]
            if isinstance(bn, nn.BatchNorm2d) and isinstance(conv, nn.Conv2d):
                merge_bn(conv, bn, output_channel_dim=0)
                seq[i] = nn.Identity()
    left = [name for name, m in net.named_modules() if isinstance(m, _BatchNorm)]
    if left:
        raise ValueError(f"cannot fold batch norm {left[:3]}: it does not follow a Conv2d")
    return net
