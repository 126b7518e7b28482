"""Brevitas fake-quantization of the float gaze nets: a wrapper, never a second architecture.

:class:`BrevitasNet` takes a float net (a module, or its Hydra config) and a
:class:`~tinytracker.quant.scheme.QuantScheme`, and returns the net

1. with **batch norm folded** into the preceding convolutions (:mod:`tinytracker.quant.folding`);
2. with its layers, activations, pools and residual sums **swapped** for Brevitas ones with the
   same weights (:mod:`tinytracker.quant.swap`);
3. each input quantized by a ``QuantIdentity`` and the output quantized with ``output_bits``
   but returned as a float tensor (cm), like a TFLite model with a dequantize at its output;
   a net with a host head (``model.position=late``) has only its sensor part quantized: its
   output is the sensor's features (quantized by their ReLU), and the head that maps
   ``cat(features, face_box)`` to gaze stays float, as it runs on the host's CPU;
4. every layer **sharing its input's quantizer**, so that its bias is an int32
   (:mod:`tinytracker.quant.input_links`).

:func:`calibrate` then sets the activation ranges on real batches.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from brevitas.graph.calibrate import calibration_mode
from brevitas.nn import QuantIdentity
from hydra.utils import instantiate
from torch import nn

from tinytracker.models.regressor import SensorNet
from tinytracker.quant.folding import fold_batchnorm
from tinytracker.quant.input_links import link_inputs
from tinytracker.quant.scheme import QuantScheme
from tinytracker.quant.swap import (
    act_quant,
    check_fully_quantized,
    is_layer,
    output_layer,
    swap_layers,
)


class BrevitasNet(nn.Module):
    """The Brevitas-quantized version of a float gaze net, with the same inputs and output.

    ``float_net`` is the float net's Hydra config (how a checkpoint rebuilds it) or a float
    module (its weights are used). ``input_keys`` and the forward signature are those of the
    float net; the output is ``(B, 2)`` gaze in cm, a float tensor. ``scheme`` are the fields
    of :class:`~tinytracker.quant.scheme.QuantScheme` (so a checkpoint's net config holds them).

    Module names inside ``net`` are the float net's, except that convolutions keep their
    position after BN folding and residual blocks / pools gain a ``.module`` level.
    """

    def __init__(
        self,
        float_net: Mapping[str, Any] | nn.Module,
        **scheme: Any,
    ) -> None:
        super().__init__()
        self.scheme = QuantScheme.from_kwargs(scheme)
        if isinstance(float_net, nn.Module):
            net = copy.deepcopy(float_net)
        else:
            net = instantiate(dict(float_net))
        net.eval()
        self.input_keys: tuple[str, ...] = tuple(net.input_keys)
        self.sensor_input_keys: tuple[str, ...] = tuple(
            getattr(net, "sensor_input_keys", self.input_keys))
        shapes = getattr(net, "input_shapes", None)
        if shapes is None:
            raise ValueError(f"{type(net).__name__} must expose input_shapes to be quantized")
        self.input_shapes = dict(shapes)
        self.scheme.check_prefixes(name for name, _ in net.named_modules())
        # The host head stays float (it runs on the host's CPU): taken out of the net before
        # the swap, so the net computes cat(features, face_box) and this module the head.
        head = net.host_head() if hasattr(net, "host_head") else None
        if head is not None:
            net.head = nn.Identity()
        self.head: nn.Module | None = head

        fold_batchnorm(net)
        dummy = tuple(torch.zeros(1, *self.input_shapes[k]) for k in self.input_keys)
        swap_layers(net, self.scheme, last=output_layer(net, dummy))
        check_fully_quantized(net)
        self.net = net
        self.input_quant = nn.ModuleDict(
            {k: act_quant(self.scheme, self.scheme.input_bits, signed=True)
             for k in self.sensor_input_keys}
        )
        self.output_quant = (
            act_quant(self.scheme, self.scheme.output_bits, signed=True)
            if self.scheme.output_bits is not None and head is None else nn.Identity()
        )
        link_inputs(self, dummy, self.scheme)

    def _quantized(self, inputs: tuple[torch.Tensor | None, ...]) -> list[torch.Tensor | None]:
        return [self.input_quant[k](x) if x is not None else None
                for k, x in zip(self.sensor_input_keys, inputs, strict=False)]

    def sensor_forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """The quantized sensor part on ``sensor_input_keys``: gaze ``(B, 2)`` cm, or with a
        host head the features ``(B, D)``."""
        if self.head is not None:
            return self.net.features(*self._quantized(inputs))
        return self.output_quant(self.net(*self._quantized(inputs)))

    def sensor_net(self) -> nn.Module:
        """The part that runs on the sensor, as a module of its own (sharing these layers)."""
        return SensorNet(self)

    def host_head(self) -> nn.Module | None:
        """The float host head (``model.position=late``), else ``None``."""
        return self.head

    def forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        return self.forward_with_features(*inputs)[0] if self.head is not None \
            else self.sensor_forward(*inputs)

    def forward_with_features(self, *inputs: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the float net's penultimate features, as quantized
        activations (for per-person calibration); ``forward`` is this pass's first output."""
        if not hasattr(self.net, "forward_with_features"):
            raise TypeError(f"{type(self.net).__name__} does not expose its penultimate "
                            "features (forward_with_features)")
        if self.head is not None:  # sensor features, then the float head on the host
            face, face_box = inputs
            feats = self.sensor_forward(face)
            return self.head(torch.cat((feats, face_box.to(feats.dtype)), dim=1)), feats
        gaze, feats = self.net.forward_with_features(*self._quantized(inputs))
        return self.output_quant(gaze), feats

    @property
    def kernel_bits(self) -> dict[str, int]:
        """Weight width of each quantized layer, by name in this module (for ``footprint``)."""
        return {name: int(m.weight_quant.bit_width())
                for name, m in self.named_modules() if is_layer(m)}

    @property
    def output_step(self) -> float | None:
        """The output's quantization step in cm (``None`` when the output is not quantized)."""
        if not isinstance(self.output_quant, QuantIdentity):
            return None
        return float(self.output_quant.act_quant.scale().detach())

    def load_float_weights(self, float_net: nn.Module) -> None:
        """Take the weights of a trained float net (same config), folding its batch norm.

        Activation scales are left as they are: calibrate afterwards.
        """
        donor = BrevitasNet(float_net, **self.scheme.as_dict())
        ours = {k: v for k, v in self.state_dict().items() if not _is_quantizer_state(k)}
        theirs = {k: v for k, v in donor.state_dict().items() if not _is_quantizer_state(k)}
        missing, unexpected = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        shapes = sorted(k for k in set(ours) & set(theirs) if ours[k].shape != theirs[k].shape)
        if missing or unexpected or shapes:
            raise ValueError(
                "the float net does not match the quantized net's float_net config: "
                f"missing {missing[:5]}, unexpected {unexpected[:5]}, shape mismatch {shapes[:5]}"
            )
        self.load_state_dict(theirs, strict=False)


def _is_quantizer_state(key: str) -> bool:
    return key.split(".")[-1] not in ("weight", "bias") or "_quant." in key


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Any], forward=None) -> int:
    """Post-training calibration of the activation scales of ``model`` (no weight update).

    Every activation quantizer records the 99.999th percentile of its float input over
    ``batches`` (Brevitas' default statistic), then fixes its scale; weights are untouched.
    ``forward(model, batch)`` runs one batch (default ``model(batch)``). Returns the number of
    batches seen.
    """
    forward = forward or (lambda m, b: m(b))
    was_training = model.training
    model.eval()
    seen = 0
    with calibration_mode(model):
        for batch in batches:
            forward(model, batch)
            seen += 1
    model.train(was_training)
    if seen == 0:
        raise ValueError("calibration needs at least one batch")
    return seen

