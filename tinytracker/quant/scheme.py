"""The quantization scheme: declared once, here. No Brevitas import.

:class:`QuantScheme`'s fields are the scheme keys of ``conf/quant/brevitas.yaml``
(``quant.weight_bits``, ``quant.layer_bits``...; a test keeps the two equal, defaults
included). Every consumer reads this object: :class:`~tinytracker.quant.brevitas.BrevitasNet`
takes its fields as keyword arguments (so a checkpoint's ``net`` config holds them), training
builds the quantized net's config from it (:meth:`QuantScheme.net_config`) and writes
:meth:`QuantScheme.metrics` to ``metrics.json``, and the ONNX export writes
:meth:`QuantScheme.as_dict` into the file's metadata.

Bit widths are per layer group: ``layer_bits`` maps a float-net module-name prefix
(``backbone``, ``backbone.features.3``, ``head``...) to bits; the longest matching prefix wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MIN_BITS, MAX_BITS = 2, 16
SCALINGS = ("po2", "float")
# ``_target_`` of the quantized wrapper, as checkpoints store it (quant.checkpoints reads it).
QUANTIZED_TARGET = "tinytracker.quant.brevitas.BrevitasNet"


@dataclass(frozen=True)
class Bits:
    """Bit widths of one layer group: weight kernels and the activations the group emits."""

    weight: int
    act: int


@dataclass(frozen=True)
class QuantScheme:
    """Validated bit widths, resolved per float-net module name by longest prefix.

    Args:
        weight_bits: default kernel width.
        act_bits: default activation width.
        input_bits: width of the quantized inputs.
        output_bits: width of the quantized output (``None``: the last layer's output is not
            quantized; its int32 accumulator is dequantized directly).
        per_channel: one weight scale per output channel (else one per tensor).
        scaling: ``"po2"`` (power-of-two scales) or ``"float"`` (any positive scale).
        layer_bits: ``{prefix: bits}`` (both widths) or ``{prefix: {weight: w, act: a}}``.

    Errors are ``ValueError`` naming the key (``weight_bits``, ``layer_bits.head.act``...);
    :meth:`from_config` prefixes the config node's name.
    """

    weight_bits: int = 8
    act_bits: int = 8
    input_bits: int = 8
    output_bits: int | None = 8
    per_channel: bool = True
    scaling: str = "po2"
    layer_bits: Mapping[str, Any] | None = None
    groups: dict[str, Bits] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"scaling must be one of {SCALINGS}, got {self.scaling!r}")
        for key in ("weight_bits", "act_bits", "input_bits"):
            _check_bits(key, getattr(self, key))
        if self.output_bits is not None:
            _check_bits("output_bits", self.output_bits)
        if not isinstance(self.per_channel, bool):
            raise ValueError(f"per_channel must be true or false, got {self.per_channel!r}")
        if self.layer_bits is not None and not isinstance(self.layer_bits, Mapping):
            raise ValueError(f"layer_bits must be a mapping of module-name prefix to bits, "
                             f"got {self.layer_bits!r}")
        groups = {str(p): self._group_bits(str(p), v) for p, v in (self.layer_bits or {}).items()}
        object.__setattr__(self, "groups", groups)
        # normalised, so that equal schemes compare (and serialise) equal
        object.__setattr__(self, "layer_bits", {p: {"weight": b.weight, "act": b.act}
                                                for p, b in groups.items()})

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The scheme's config keys (the dataclass fields a config sets)."""
        return tuple(f.name for f in fields(cls) if f.init)

    @classmethod
    def from_config(cls, node: Mapping[str, Any], prefix: str = "quant") -> QuantScheme:
        """The scheme of a config node holding (at least) the scheme keys.

        Keys of the node that are not scheme keys (``mode``, ``epochs``...) are ignored; a
        missing key takes the default. Errors name the key under ``prefix``.
        """
        values = {k: _plain(node[k]) for k in cls.keys() if k in node}
        try:
            return cls(**values)
        except ValueError as err:
            raise ValueError(f"{prefix}.{err}") from err

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> QuantScheme:
        """The scheme of a quantized net's keyword arguments; unknown keys are errors."""
        unknown = sorted(set(kwargs) - set(cls.keys()))
        if unknown:
            raise ValueError(f"unknown quantization keys {unknown}; the scheme's keys are "
                             f"{list(cls.keys())}")
        return cls(**{k: _plain(v) for k, v in kwargs.items()})

    @property
    def default(self) -> Bits:
        return Bits(self.weight_bits, self.act_bits)

    def _group_bits(self, prefix: str, value: Any) -> Bits:
        key = f"layer_bits.{prefix}"
        if isinstance(value, Mapping):
            unknown = set(value) - {"weight", "act"}
            if unknown:
                raise ValueError(f"{key} takes 'weight' and 'act', got {sorted(unknown)}")
            return Bits(_check_bits(f"{key}.weight", value.get("weight", self.weight_bits)),
                        _check_bits(f"{key}.act", value.get("act", self.act_bits)))
        bits = _check_bits(key, value)
        return Bits(bits, bits)

    def bits_for(self, name: str) -> Bits:
        """Widths for the float-net module ``name`` (longest matching ``layer_bits`` prefix)."""
        best, best_len = self.default, -1
        for prefix, bits in self.groups.items():
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = bits, len(prefix)
        return best

    def check_prefixes(self, names: Iterable[str]) -> None:
        """Every ``layer_bits`` prefix must name a module of the float net (``names``)."""
        names = list(names)
        for prefix in self.groups:
            if not any(n == prefix or n.startswith(prefix + ".") for n in names):
                tops = sorted({n.split(".")[0] for n in names if n})
                raise ValueError(
                    f"layer_bits.{prefix} names no layer of the model; use module-name "
                    f"prefixes of the float net, e.g. {tops}"
                )

    def as_dict(self) -> dict[str, Any]:
        """The scheme keys and their values (plain data: configs, JSON, ONNX metadata)."""
        return {k: getattr(self, k) for k in self.keys()}

    def net_config(self, float_net: Mapping[str, Any]) -> dict[str, Any]:
        """Hydra config of the quantized wrapper around the float net config ``float_net``."""
        return {"_target_": QUANTIZED_TARGET, "float_net": dict(float_net), **self.as_dict()}

    def metrics(self) -> dict[str, Any]:
        """Flat ``quant/...`` entries of the scheme, for ``metrics.json``."""
        out = {f"quant/{k}": v for k, v in self.as_dict().items() if k != "layer_bits"}
        for prefix, bits in self.groups.items():
            out[f"quant/layer_bits/{prefix}/weight_bits"] = bits.weight
            out[f"quant/layer_bits/{prefix}/act_bits"] = bits.act
        return out


def _check_bits(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
        raise ValueError(f"{key} must be an integer from {MIN_BITS} to {MAX_BITS}, got {value!r}")
    return value


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain dicts (the scheme is stored in checkpoints as plain data)."""
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
