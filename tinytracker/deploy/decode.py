"""The sensor's tensors as ``dnnParams.xml`` describes them, and the output tensor decoded.

``imxconv-pt`` writes ``dnnParams.xml`` next to ``packerOut.zip``
(:mod:`tinytracker.export.imxconv`). Each ``inputTensor`` / ``outputTensor`` element carries
``bitsPerElement``, ``format`` (``signed``/``unsigned``), ``scale`` and ``shift`` and its
``dimension`` children (``size``, ``ordinal``, ``serializationOrder``); a TinyTracker export
has e.g. input ``3x112x112`` int8 at ``scale=0.0078125`` and output ``2`` int8 at
``scale=0.03125``. The real value of a code is ``q * scale``: MCT quantizes symmetrically
(power-of-two scales, no zero point), and every file we have seen has ``shift="0"``. What a
non-zero ``shift`` means is not documented, so :func:`parse_dnn_params` refuses one rather than
guess.

On the Pi, libcamera already applies that scale: its ``CnnOutputTensor`` control is "a
floating point array storing the output tensors" (Raspberry Pi AI Camera manual), and
picamera2's ``IMX500.get_outputs(metadata)`` reshapes it per tensor (Fortran order, as the
sensor serialises the first dimension fastest). :func:`from_sensor` takes that list;
:func:`from_codes` takes raw integer codes (the emulation, or a dumped tensor).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTPUT_KINDS = {"gaze_cm": "cm", "features": "1"}  # kind -> units of its values


class DecodeError(ValueError):
    """A tensor or ``dnnParams.xml`` that does not match what the manifest says."""


@dataclass(frozen=True)
class TensorSpec:
    """One sensor tensor: ``shape`` in ``dimension ordinal`` order, value = code * ``scale``."""

    name: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int = 0
    bits: int = 8
    signed: bool = True

    @property
    def code_range(self) -> tuple[int, int]:
        """The smallest and largest integer code."""
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1


@dataclass(frozen=True)
class DnnParams:
    """The tensors of the first network of a ``dnnParams.xml``."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def parse_dnn_params(path: Path | str) -> DnnParams:
    """Read the converter's ``dnnParams.xml`` (first ``network``)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise DecodeError(f"{path}: not a readable dnnParams.xml: {err}") from err
    network = root.find("./networks/network")
    if network is None:
        raise DecodeError(f"{path}: no <networks><network> element (expected the converter's "
                          "dnnParams.xml)")
    inputs = tuple(_tensor(t, path) for t in network.findall("./inputTensors/inputTensor"))
    outputs = tuple(_tensor(t, path) for t in network.findall("./outputTensors/outputTensor"))
    if not inputs or not outputs:
        raise DecodeError(f"{path}: expected inputTensor and outputTensor elements, found "
                          f"{len(inputs)} inputs and {len(outputs)} outputs")
    return DnnParams(inputs, outputs)


def _tensor(element: ET.Element, path: Path) -> TensorSpec:
    name = element.get("name", "?")
    try:
        dims = sorted(element.findall("./dimensions/dimension"),
                      key=lambda d: int(d.get("ordinal")))
        shape = tuple(int(d.get("size")) for d in dims)
        shift = int(element.get("shift"))
        spec = TensorSpec(name=name, shape=shape, scale=float(element.get("scale")),
                          bits=int(element.get("bitsPerElement")),
                          signed=element.get("format") == "signed")
    except (TypeError, ValueError) as err:
        raise DecodeError(f"{path}: tensor {name!r} lacks a readable scale, shift, "
                          f"bitsPerElement or dimension size: {err}") from err
    if shift != 0:
        raise DecodeError(f"{path}: tensor {name!r} has shift={shift}; only shift=0 (symmetric "
                          "MCT quantization, value = code * scale) is understood here")
    return spec


def quantise(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Real values -> integer codes of ``spec`` (round half to even, saturating): int32."""
    low, high = spec.code_range
    codes = np.rint(np.asarray(values, dtype=np.float64) / spec.scale) + spec.zero_point
    return np.clip(codes, low, high).astype(np.int32)


def dequantise(codes: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Integer codes -> real values ``(q - zero_point) * scale``: float32."""
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise DecodeError(f"dequantise takes integer codes, got {codes.dtype} (a float tensor "
                          "from picamera2 is already dequantised: use from_sensor)")
    low, high = spec.code_range
    if codes.size and (codes.min() < low or codes.max() > high):
        raise DecodeError(f"codes outside [{low}, {high}] for {spec.bits}-bit "
                          f"{'signed' if spec.signed else 'unsigned'} tensor {spec.name!r}")
    return ((codes.astype(np.float64) - spec.zero_point) * spec.scale).astype(np.float32)


def _rows(values: np.ndarray, size: int, what: str) -> np.ndarray:
    """``(size,)`` or ``(N, size)`` -> ``(N, size)``, refusing any other shape."""
    values = np.asarray(values)
    if values.ndim == 1:
        values = values[None]
    if values.ndim != 2 or values.shape[1] != size:
        raise DecodeError(f"{what}: expected {size} values per frame, got shape {values.shape}")
    return values


def from_codes(codes: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Integer output codes ``(D,)`` or ``(N, D)`` -> float32 ``(N, D)`` (cm or features)."""
    return dequantise(_rows(codes, _size(spec), f"output tensor {spec.name!r}"), spec)


def from_sensor(outputs: Sequence[np.ndarray] | None, size: int) -> np.ndarray:
    """picamera2's ``IMX500.get_outputs(metadata)`` -> float32 ``(1, size)``.

    Our networks have one output tensor (the gaze in cm, or the feature vector of the ``late``
    choice); ``None`` (no tensor in this frame's metadata) and any other layout are refused.
    """
    if outputs is None:
        raise DecodeError("this frame carries no output tensor (IMX500.get_outputs returned "
                          "None): the network is still loading or the frame was dropped")
    if len(outputs) != 1:
        raise DecodeError(f"expected one output tensor, the sensor sent {len(outputs)} "
                          f"with shapes {[np.shape(o) for o in outputs]}")
    flat = np.asarray(outputs[0], dtype=np.float32).reshape(-1)
    return _rows(flat, size, "sensor output tensor")


def _size(spec: TensorSpec) -> int:
    return int(np.prod(spec.shape))
