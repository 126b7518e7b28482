"""``deploy.json``: everything the camera side needs besides ``network.rpk``.

One versioned file, written by ``format=imx500`` next to ``packerOut.zip`` and read by the Pi
program and the emulation::

    {"format_version": 1,
     "input":  {"format": "RGB", "width": 112, "height": 112,
                "scale": 0.0078125, "zero_point": 0, "mean": 0.5, "std": 0.5},
     "roi":    {"mode": "face", "square": true, "scale": 1.0, "edge": "clip",
                "sensor_width": 4056, "sensor_height": 3040},
     "output": {"kind": "features", "size": 64, "scale": 0.03125, "zero_point": 0,
                "units": "1"},
     "head":   {"file": "head.npz", "formula": "..."},
     "ckpt_sha256": "..."}

``input``: the sensor's input tensor (format, size in pixels, its int8 scale from
``dnnParams.xml``, and the model's own ``(x/255 - mean) / std``, from which the ISP's
registers follow: :meth:`~tinytracker.deploy.roi.IspNorm.for_normalisation`). ``roi``: the
face box -> ROI rule (:class:`~tinytracker.deploy.roi.RoiRule`) or ``mode: full_frame``.
``output``: how to read the output tensor (``gaze_cm``: the gaze itself, in cm; ``features``:
the input of the host head). ``head``: ``null`` for ``gaze_cm``; else the head file, relative
to ``deploy.json``. ``ckpt_sha256``: the checkpoint both files came from.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinytracker.deploy.decode import OUTPUT_KINDS, DnnParams, TensorSpec
from tinytracker.deploy.head import FORMULA as HEAD_FORMULA
from tinytracker.deploy.roi import INPUT_FORMATS, SENSOR_SIZE, IspNorm, RoiRule

FORMAT_VERSION = 1
FILE_NAME = "deploy.json"


class ManifestError(ValueError):
    """A ``deploy.json`` this code cannot use; the message names the file and the key."""


@dataclass(frozen=True)
class InputSpec:
    """The sensor's input tensor and the normalisation the model was trained with."""

    format: str
    width: int
    height: int
    scale: float
    zero_point: int = 0
    mean: float = 0.5
    std: float = 0.5

    @property
    def channels(self) -> int:
        return 1 if self.format == "Y" else 3

    def isp_norm(self) -> IspNorm:
        """The ISP registers that produce this tensor's int8 codes."""
        return IspNorm.for_normalisation(self.mean, self.std, self.scale, self.channels)

    def tensor(self) -> TensorSpec:
        return TensorSpec("input", (self.channels, self.height, self.width), self.scale,
                          self.zero_point)


@dataclass(frozen=True)
class RoiSpec:
    """Which ROI to set: :class:`~tinytracker.deploy.roi.RoiRule` on a sensor of this size."""

    mode: str = "face"
    square: bool = True
    scale: float = 1.0
    edge: str = "clip"
    sensor_width: int = SENSOR_SIZE[0]
    sensor_height: int = SENSOR_SIZE[1]

    def rule(self) -> RoiRule:
        return RoiRule(self.mode, self.square, self.scale, self.edge)

    @property
    def sensor_size(self) -> tuple[int, int]:
        return self.sensor_width, self.sensor_height


@dataclass(frozen=True)
class OutputSpec:
    """The output tensor: ``size`` values of ``kind``, value = (code - zero_point) * scale."""

    kind: str
    size: int
    scale: float
    zero_point: int = 0
    units: str = "cm"

    def tensor(self) -> TensorSpec:
        return TensorSpec("output", (self.size,), self.scale, self.zero_point)


@dataclass(frozen=True)
class HeadRef:
    """The host head: its file (relative to ``deploy.json``) and what it computes."""

    file: str
    formula: str


@dataclass(frozen=True)
class Manifest:
    input: InputSpec
    roi: RoiSpec
    output: OutputSpec
    head: HeadRef | None
    ckpt_sha256: str
    format_version: int = FORMAT_VERSION

    def validate(self, where: str = FILE_NAME) -> None:
        """Cross-field checks; raises :class:`ManifestError` naming ``where`` and the key."""
        checks = [
            (self.input.format in INPUT_FORMATS, "input.format",
             f"one of {INPUT_FORMATS}, got {self.input.format!r}"),
            (self.input.width > 0 and self.input.height > 0, "input.width",
             f"positive sizes, got {self.input.width}x{self.input.height}"),
            (self.output.kind in OUTPUT_KINDS, "output.kind",
             f"one of {tuple(OUTPUT_KINDS)}, got {self.output.kind!r}"),
            (self.output.kind != "gaze_cm" or self.output.size == 2, "output.size",
             f"2 for output.kind='gaze_cm' (XCam, YCam), got {self.output.size}"),
            ((self.head is None) == (self.output.kind == "gaze_cm"), "head",
             "a head file exactly when output.kind is 'features' (got "
             f"kind={self.output.kind!r}, head={self.head})"),
            (len(self.ckpt_sha256) == 64, "ckpt_sha256",
             f"a 64-digit sha256, got {self.ckpt_sha256!r}"),
        ]
        for ok, key, expected in checks:
            if not ok:
                raise ManifestError(f"{where}: key {key!r}: expected {expected}")
        try:
            self.roi.rule()
        except ValueError as err:
            raise ManifestError(f"{where}: key 'roi': {err}") from err

    def head_path(self, manifest_path: Path | str) -> Path | None:
        """The head file, resolved against the folder of ``manifest_path``."""
        return None if self.head is None else Path(manifest_path).parent / self.head.file


def manifest_for_export(dnn: DnnParams, dnn_path: Path | str, *, input_format: str,
                        mean: float, std: float, roi: RoiSpec, output_kind: str,
                        head_file: str | None, ckpt_sha256: str) -> Manifest:
    """The manifest of a converted network: sizes and scales from its ``dnnParams.xml``
    (``dnn``, read from ``dnn_path``), the rest from the model's config. Refuses a network
    the sensor cannot feed (more than one input tensor) or read (more than one output)."""
    if len(dnn.inputs) != 1:
        raise ManifestError(
            f"{dnn_path} lists {len(dnn.inputs)} input tensors "
            f"({', '.join(t.name for t in dnn.inputs)}); the IMX500 fills exactly one, from its "
            "ISP. Export a model whose only input is the image (not the grid-embedding design)")
    if len(dnn.outputs) != 1:
        raise ManifestError(f"{dnn_path} lists {len(dnn.outputs)} output tensors; the camera "
                            "side reads one (the gaze in cm, or the head's features)")
    (tensor,), (out,) = dnn.inputs, dnn.outputs
    channels = 1 if input_format == "Y" else 3
    if len(tensor.shape) != 3 or tensor.shape[0] != channels:
        raise ManifestError(f"{dnn_path}: input tensor {tensor.name!r} has shape {tensor.shape}; "
                            f"input format {input_format} needs ({channels}, height, width)")
    manifest = Manifest(
        input=InputSpec(input_format, width=tensor.shape[2], height=tensor.shape[1],
                        scale=tensor.scale, zero_point=tensor.zero_point, mean=mean, std=std),
        roi=roi,
        output=OutputSpec(output_kind, int(np.prod(out.shape)), out.scale, out.zero_point,
                          OUTPUT_KINDS.get(output_kind, "?")),
        head=None if head_file is None else HeadRef(head_file, HEAD_FORMULA),
        ckpt_sha256=ckpt_sha256)
    manifest.validate(str(dnn_path))
    return manifest


def write_manifest(path: Path | str, manifest: Manifest) -> Path:
    """Validate and write ``manifest`` as JSON; returns the path."""
    path = Path(path)
    manifest.validate(str(path))
    path.write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return path


def read_manifest(path: Path | str) -> Manifest:
    """Read ``deploy.json``; a wrong ``format_version``, a missing or unknown key, or a value
    of the wrong type raises :class:`ManifestError` naming the file and the key."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: not a readable JSON file: {err}") from err
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: expected a JSON object, got {type(data).__name__}")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        age = ("older" if isinstance(version, int) and version < FORMAT_VERSION else "newer"
               if isinstance(version, int) else "unknown")
        raise ManifestError(
            f"{path}: key 'format_version' is {version!r} ({age}); this tinytracker reads "
            f"format_version {FORMAT_VERSION}. Export the checkpoint again with this version "
            "(python -m tinytracker.export ckpt_path=... format=imx500), or use the "
            "tinytracker that wrote it")
    manifest = _build(Manifest, data, str(path), "")
    manifest.validate(str(path))
    return manifest


def _build(cls: type, data: Any, where: str, prefix: str) -> Any:
    """``cls`` (a dataclass) from a JSON object, checking keys and scalar types."""
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: key {prefix.rstrip('.') or '<root>'!r}: expected an "
                            f"object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {[prefix + k for k in unknown]}; expected "
                            f"only {[prefix + k for k in fields]}")
    values = {}
    for name, field in fields.items():
        key = prefix + name
        if name not in data:
            if field.default is dataclasses.MISSING:
                raise ManifestError(f"{where}: missing key {key!r}")
            continue
        values[name] = _value(hints[name], data[name], where, key)
    return cls(**values)


def _value(hint: Any, value: Any, where: str, key: str) -> Any:
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and type(None) in args:
        if value is None:
            return None
        hint = next(a for a in args if a is not type(None))
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, key + ".")
    expected = {float: (int, float), int: (int,), bool: (bool,), str: (str,)}[hint]
    if isinstance(value, bool) and hint is not bool or not isinstance(value, expected):
        raise ManifestError(f"{where}: key {key!r}: expected {hint.__name__}, got {value!r}")
    return hint(value)

