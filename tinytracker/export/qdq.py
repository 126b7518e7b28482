"""Rewrites of an exported QDQ graph that change its integer types, never its arithmetic.

Brevitas writes each activation with the signedness it was trained with: ``uint8`` after a
ReLU, ``int8`` (zero point 0) elsewhere. ONNX Runtime fuses a ``DequantizeLinear -> Conv ->
QuantizeLinear`` group into one integer ``QLinearConv`` only when input and output have the
same type, and on x86 CPUs without VNNI it runs int8 activations only where it can first turn
a ``Q -> DQ`` pair into uint8 itself (``QDQS8ToU8Transformer``). Where an int8 tensor feeds
two consumers (a residual ``Add`` and the next block), it cannot, and the convolutions around
it stay float: 10 of TinyTracker's 36.

:func:`activations_as_uint8` gives every activation tensor the uint8 type by moving its zero
point by +128: ``q_u8 = q_s8 + 128`` on the same scale, so every quantized value and every
dequantized value is exactly what it was (the shift is an exact integer map between the two
saturation ranges). Weights stay int8 (ONNX Runtime's U8S8 kernels). After it, ONNX Runtime
fuses every convolution, residual addition and fully connected layer of TinyTracker.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

ACTIVATION_TYPES = ("uint8", "as_trained")


def activations_as_uint8(model: onnx.ModelProto) -> int:
    """Make every int8 activation tensor of ``model`` uint8, in place; returns how many
    ``QuantizeLinear`` / ``DequantizeLinear`` / ``Clip`` nodes changed.

    Constant paths (weights and biases, possibly through a ``Clip`` that narrows their range)
    keep their types. A zero-point initializer shared between a weight and an activation is
    copied, not changed under the weight.
    """
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def constant(name: str) -> bool:
        node = producer.get(name)
        return name in inits or (node is not None and node.op_type == "Clip"
                                 and node.input[0] in inits)

    shifted: dict[str, onnx.TensorProto] = {}

    def shift(name: str) -> str:
        if name not in inits:
            raise ValueError(f"zero point or clip bound {name!r} is not an initializer; "
                             "cannot retype a computed quantization parameter")
        new_name = f"{name}_u8"
        if new_name not in shifted:
            values = numpy_helper.to_array(inits[name])
            if values.dtype != np.int8:
                raise ValueError(f"{name!r}: expected int8, got {values.dtype}")
            shifted[new_name] = numpy_helper.from_array(
                (values.astype(np.int16) + 128).astype(np.uint8), new_name)
        return new_name

    retyped: set[str] = set()  # activation tensors now uint8
    changed = 0
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not constant(node.input[0]):
            if len(node.input) < 3 or not node.input[2]:
                continue  # no zero point: uint8 already (the ONNX default)
            if inits.get(node.input[2]) is not None and \
                    inits[node.input[2]].data_type != TensorProto.INT8:
                continue
            node.input[2] = shift(node.input[2])
            changed += 1
            if node.op_type == "QuantizeLinear":
                retyped.add(node.output[0])
        elif node.op_type == "Clip" and node.input[0] in retyped:
            node.input[1:3] = [shift(n) if n else n for n in node.input[1:3]]
            retyped.add(node.output[0])
            changed += 1
    graph.initializer.extend(shifted.values())
    for info in graph.value_info:
        if info.name in retyped:
            info.type.tensor_type.elem_type = TensorProto.UINT8
    return changed
