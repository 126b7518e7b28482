"""Read a TFLite flatbuffer: operators in graph order, tensors, dequantized constants.

Parsed with the flatbuffer schema module that ships with LiteRT (``ai-edge-litert``,
``ai_edge_litert.schema_py_generated``, generated from TFLite's ``schema.fbs``); nothing is
executed. Quantized values follow TFLite's affine scheme, ``real = scale * (q - zero_point)``,
per tensor or per channel along ``quantized_dimension``
(https://ai.google.dev/edge/litert/models/quantization_spec).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

INSTALL_HINT = "reading .tflite files needs LiteRT's Python package: pip install ai-edge-litert"


class TFLiteFormatError(ValueError):
    """A file that is not a TFLite model this importer understands."""


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return schema_py_generated


_NUMPY_TYPES = {"FLOAT32": np.float32, "INT32": np.int32, "INT8": np.int8, "UINT8": np.uint8,
                "INT64": np.int64, "INT16": np.int16, "FLOAT16": np.float16}


@dataclass(frozen=True, eq=False)
class Quantization:
    scale: np.ndarray  # (1,) per tensor or (channels,)
    zero_point: np.ndarray
    axis: int  # quantized_dimension, for per-channel parameters


@dataclass(frozen=True, eq=False)  # compared by identity
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str  # TFLite TensorType name, e.g. "INT8"
    quant: Quantization | None
    data: np.ndarray | None = field(repr=False)  # constant (weights, biases) or None

    def dequantized(self) -> np.ndarray:
        """The constant's real values (float32), per-channel parameters broadcast on ``axis``."""
        if self.data is None:
            raise TFLiteFormatError(f"tensor {self.name!r} is not a constant")
        if self.quant is None:
            return self.data.astype(np.float32)
        shape = [1] * self.data.ndim
        if self.quant.scale.size > 1:
            shape[self.quant.axis] = -1
        scale = self.quant.scale.reshape(shape)
        zero = self.quant.zero_point.reshape(shape)
        return ((self.data.astype(np.float64) - zero) * scale).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Op:
    index: int
    kind: str  # BuiltinOperator name, e.g. "CONV_2D"
    options: dict[str, Any]
    inputs: tuple[Tensor | None, ...]  # None for an omitted optional input
    outputs: tuple[Tensor, ...]


@dataclass(frozen=True, eq=False)
class Graph:
    path: Path
    ops: tuple[Op, ...]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    def producer(self, tensor: Tensor) -> Op | None:
        return next((op for op in self.ops if any(t.index == tensor.index
                                                  for t in op.outputs)), None)


def _names(enum: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def read_tflite(path: str | Path) -> Graph:
    """Parse the first subgraph of a ``.tflite`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"TFLite model {path} does not exist")
    schema = _schema()
    buf = path.read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise TFLiteFormatError(f"{path} is not a TFLite flatbuffer (no 'TFL3' identifier)")
    try:  # a damaged flatbuffer fails on reading an offset outside the file
        model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    except Exception as err:
        raise TFLiteFormatError(f"{path} is not a readable TFLite flatbuffer (damaged or "
                                f"truncated: {type(err).__name__}: {err})") from err
    if not model.subgraphs:
        raise TFLiteFormatError(f"{path} holds no subgraph")
    graph = model.subgraphs[0]
    type_names = _names(schema.TensorType)
    op_names = _names(schema.BuiltinOperator)
    tensors = [_tensor(i, t, model.buffers, buf, type_names) for i, t in enumerate(graph.tensors)]
    ops = []
    for k, op in enumerate(graph.operators):
        code = model.operatorCodes[op.opcodeIndex]
        kind = op_names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        opts = op.builtinOptions
        options = {a: getattr(opts, a) for a in vars(opts)} if opts is not None else {}
        ops.append(Op(k, kind, options,
                      tuple(tensors[i] if i >= 0 else None for i in op.inputs),
                      tuple(tensors[i] for i in op.outputs)))
    return Graph(path, tuple(ops), tuple(tensors[i] for i in graph.inputs),
                 tuple(tensors[i] for i in graph.outputs))


def _tensor(index: int, t: Any, buffers: list, raw: bytes, type_names: dict[int, str]) -> Tensor:
    dtype = type_names.get(t.type, str(t.type))
    shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
    data = None
    buffer = buffers[t.buffer] if 0 < t.buffer < len(buffers) else None
    if buffer is not None:
        blob = bytes(buffer.data) if buffer.data is not None else b""
        if not blob and getattr(buffer, "offset", 0) > 1:  # stored after the flatbuffer
            blob = raw[buffer.offset:buffer.offset + buffer.size]
        if blob and dtype in _NUMPY_TYPES:
            data = np.frombuffer(blob, dtype=_NUMPY_TYPES[dtype]).reshape(shape)
    q = t.quantization
    quant = None
    if q is not None and q.scale is not None and len(q.scale) > 0:
        zero = q.zeroPoint if q.zeroPoint is not None else np.zeros(len(q.scale))
        quant = Quantization(np.asarray(q.scale, dtype=np.float64),
                             np.asarray(zero, dtype=np.int64), int(q.quantizedDimension))
    name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
    return Tensor(index, name, shape, dtype, quant, data)
