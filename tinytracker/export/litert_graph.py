"""The float net in the form ``format=tflite`` converts: the same function, arranged for int8.

An int8 file gives each tensor one scale, and the PT2E quantizer gives a concatenation's
inputs the scale of its output. The ``late`` host head concatenates the penultimate features
(0 to about 20) with the face box (0 to 1): on the features' scale the box keeps about a dozen
levels, and where the face is, the very thing the head adds, is lost (the default TinyTracker
lost 1.6 cm of test error that way). So the head is rewritten, not changed: each linear layer
that reads ``concat(features, box)`` becomes the sum of two linear layers, one per part (the
weight's two column blocks), and the box modulation's ``gamma`` and ``beta`` get a layer each;
every tensor then has a scale of its own. The result equals the net's own head in float
(tests/test_export_tflite.py). Image inputs are NHWC, as LiteRT, cameras and the authors'
files have them. A net that stacks an image and the grid embedding on channels
(``position=input``/``frame`` with the grid embedding) takes them stacked, as one input
(``face_and_grid_embedding``), as the authors' files and the IMX500 do: two inputs joined by an
NHWC concatenation in the file cost TinyTracker at 128 px 40 % of its LiteRT latency.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tinytracker.deploy.head import layers_from_module
from tinytracker.onnx_runner import OUTPUT_NAME


def _linear(weight, bias) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(bias))
    return layer


class SplitLateHead(nn.Module):
    """A ``late`` host head (``cat(features, box) -> gaze``, :class:`LateHead` or a plain MLP)
    as ``(features, box) -> gaze`` without a concatenation."""

    def __init__(self, head: nn.Module, feature_dim: int) -> None:
        super().__init__()
        weights, biases, relu_after, film = layers_from_module(head)
        d = feature_dim
        self.film = film is not None
        if film is not None:
            film_w, film_b = film
            self.gamma = _linear(film_w[:d], film_b[:d])
            self.beta = _linear(film_w[d:], film_b[d:])
        self.first_features = _linear(weights[0][:, :d], biases[0])
        self.first_box = _linear(weights[0][:, d:], None)
        self.first_relu = 0 in relu_after
        rest: list[nn.Module] = []
        for i in range(1, len(weights)):
            rest.append(_linear(weights[i], biases[i]))
            if i in relu_after:
                rest.append(nn.ReLU())
        self.rest = nn.Sequential(*rest)

    def forward(self, features: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        if self.film:
            box = box * 2.0 - 1.0
            features = features * (1.0 + self.gamma(box)) + self.beta(box)
        x = self.first_features(features) + self.first_box(box)
        if self.first_relu:
            x = torch.relu(x)
        return self.rest(x)


class NHWCFlattenEmbed(nn.Module):
    """TinyTracker's ``embed`` with the flatten before its first linear layer in NHWC order
    and that layer's columns permuted to match: the same function, and a file without the
    TRANSPOSE that flattening in PyTorch's NCHW order would put there."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        first = net.fc[0]
        channels = net.channel_reduce.out_channels
        side = round((first.in_features // channels) ** 0.5)
        weight = first.weight.detach().reshape(first.out_features, channels, side, side)
        self.first = _linear(weight.permute(0, 2, 3, 1).reshape(first.out_features, -1).numpy(),
                             None if first.bias is None else first.bias.detach().numpy())
        self.rest = net.fc[1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        y = net.channel_reduce(net.backbone(net.input_adapter(x)))
        return self.rest(self.first(y.permute(0, 2, 3, 1).flatten(1)))


def _embedding(net: nn.Module) -> nn.Module | None:
    """:class:`NHWCFlattenEmbed` for TinyTracker; None (the net's own ``embed``) otherwise."""
    from tinytracker.models.tinytracker import TinyTracker

    return NHWCFlattenEmbed(net) if isinstance(net, TinyTracker) else None


def stacked_images(net: nn.Module) -> tuple[str, ...]:
    """The image inputs ``net`` stacks on channels before its first layer (the image, then
    the grid embedding), in that order; ``()`` when it has one image input."""
    shapes = net.input_shapes
    images = tuple(k for k in net.input_keys if len(shapes[k]) == 3)
    return images if len(images) > 1 and hasattr(net, "gaze_from_features") else ()


def file_keys(net: nn.Module) -> tuple[str, ...]:
    """The ``.tflite`` file's inputs: the batch fields, the stacked images as one
    (``face_and_grid_embedding``)."""
    images = stacked_images(net)
    if not images:
        return tuple(net.input_keys)
    return ("_and_".join(images), *(k for k in net.input_keys if k not in images))


def file_arrays(net: nn.Module, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NHWC arrays by batch field -> by the file's inputs (stacked images on the last axis)."""
    images = stacked_images(net)
    if not images:
        return dict(arrays)
    stacked = np.concatenate([arrays[k] for k in images], axis=-1)
    return {file_keys(net)[0]: stacked, **{k: v for k, v in arrays.items() if k not in images}}


class LiteRTGraph(nn.Module):
    """The float net as the ``.tflite`` computes it: inputs by name (:func:`file_keys`), image
    inputs NHWC, one output named ``gaze_cm``; a ``late`` head as :class:`SplitLateHead`.
    Shares the net's layers."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.input_keys: tuple[str, ...] = file_keys(net)
        self.stacked = bool(stacked_images(net))
        self.embedding = _embedding(net)
        head = net.host_head() if hasattr(net, "host_head") else None
        self.late_head = None if head is None else SplitLateHead(head, net.feature_dim)

    def forward(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.stacked:  # one image input, the grid embedding's channels after the image's
            x = inputs[self.input_keys[0]].permute(0, 3, 1, 2)
            return {OUTPUT_NAME: self.net.gaze_from_features(self.embed(x))}
        ordered = [inputs[k].permute(0, 3, 1, 2) if inputs[k].dim() == 4 else inputs[k]
                   for k in self.input_keys]
        if self.late_head is None:
            return {OUTPUT_NAME: self.net(*ordered)}
        face, box = ordered
        return {OUTPUT_NAME: self.late_head(self.embed(face), box)}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked NCHW input -> the net's penultimate features."""
        return self.net.embed(x) if self.embedding is None else self.embedding(x)
