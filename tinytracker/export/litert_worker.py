"""The LiteRT side of ``format=tflite``, run by the Python of ``.venv-litert`` as a script.

Google's ``litert-torch`` (the converter) and ``tflite-micro`` (TFLite Micro's interpreter) live
in their own environment: ``litert-torch`` pins ``typing-extensions<4.13`` (through ``xdsl``) and
brings JAX, transformers and torchao, none of which the training environment should carry
(:mod:`tinytracker.export.litert_env`). So this file imports nothing of ``tinytracker`` and is
run by path, never imported by the package: it talks to :mod:`tinytracker.export.tflite`
through files (a ``torch.export`` program, ``.npz`` arrays, JSON reports).

``convert``: the float program (NHWC image inputs, named as the batch fields, output
``gaze_cm``) is quantized with the PT2E flow of ``litert-torch`` (int8 per-channel symmetric
weights, int8 activations calibrated on the given images, histogram observers) and converted
to a full-integer ``.tflite`` (int8 inputs and output), into which the given metadata is
written. ``micro``: the file in TFLite Micro's interpreter: whether it takes every operator
(a missing one is named with its layers), the tensor arena it needs (the recording
allocator's figure, then checked by running with exactly that arena), and its outputs on
the given int8 inputs.

Every command writes a JSON report; an error is reported there (``error``) and the exit
code is 2.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

FILE_IDENTIFIER = b"TFL3"  # TFLite's flatbuffer file identifier (schema.fbs)


class WorkerError(RuntimeError):
    """A conversion or interpreter step that failed, said in the user's terms."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="PT2E-quantize a torch.export program to .tflite")
    convert.add_argument("--program", required=True, help="torch.export .pt2 file (float)")
    convert.add_argument("--calibration", required=True,
                         help=".npz of float inputs, one array per input name, batch first")
    convert.add_argument("--metadata", required=True, help="JSON object: name -> text")
    convert.add_argument("--out", required=True, help="the .tflite to write")
    convert.add_argument("--report", required=True)
    micro = sub.add_parser("micro", help="run a .tflite in TFLite Micro's interpreter")
    micro.add_argument("--model", required=True)
    micro.add_argument("--inputs", required=True,
                       help=".npz of the file's inputs (its dtypes), arrays input_<i>, batch first")
    micro.add_argument("--outputs", required=True, help=".npz to write (output_<i>)")
    micro.add_argument("--report", required=True)
    versions = sub.add_parser("versions", help="versions of the converter and interpreters")
    versions.add_argument("--report", required=True)
    args = parser.parse_args(argv)
    commands = {"convert": _convert, "micro": _micro, "versions": _versions}
    report: dict[str, Any]
    try:
        report = commands[args.command](args)
        code = 0
    except WorkerError as err:
        report, code = {"error": str(err)}, 2
    except Exception as err:  # a converter's own failure: its message and where it came from
        report = {"error": f"{type(err).__name__}: {err}",
                  "traceback": traceback.format_exc()[-6000:]}
        code = 2
    Path(args.report).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return code


def _versions(_args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    return {f"version/{name}": version(name)
            for name in ("litert-torch", "ai-edge-litert", "torch", "torchao", "tflite-micro")}


# ------------------------------------------------------------------------------ convert


def _convert(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    t0 = time.perf_counter()
    program = torch.export.load(args.program)
    names = list(program.graph_signature.user_inputs)
    calibration = np.load(args.calibration)
    missing = [n for n in names if n not in calibration.files]
    if missing:
        raise WorkerError(f"the calibration file has no {missing} (inputs: {names})")
    frames = len(calibration[names[0]])
    module = program.module()
    functional_ops(module)
    quantized, quantizer = _pt2e_quantize(module, {n: calibration[n] for n in names}, frames)
    sample = {n: torch.from_numpy(calibration[n][:1]) for n in names}
    content = _litert_convert(quantized, sample, quantizer)
    meta = json.loads(Path(args.metadata).read_text())
    content = with_metadata(content, {str(k): str(v) for k, v in meta.items()})
    Path(args.out).write_bytes(content)
    report = {"convert_s": time.perf_counter() - t0, "calibration_images": frames,
              "quantizer": "litert_torch PT2EQuantizer: int8 per-channel symmetric weights, "
                           "int8 activations (static, histogram observers)",
              **model_summary(content), **_versions(args)}
    return report


def functional_ops(module) -> None:
    """In-place ATen ops (``add_``, ``relu_``: torchvision's ``result += input``) as their
    functional twins, which the PT2E quantizer annotates (it leaves ``add_`` float). Safe only
    where nothing else reads the overwritten tensor; anything else is refused by name."""
    import torch

    for node in module.graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload):
            continue
        name = target._schema.name.split("::")[-1]
        if not name.endswith("_") or name.startswith("_"):
            continue
        packet = getattr(torch.ops.aten, name[:-1], None)
        functional = getattr(packet, target._overloadname, None) if packet else None
        if functional is None:
            continue
        first = node.args[0]
        if getattr(first, "users", None) and len(first.users) != 1:
            raise WorkerError(f"{_layer(node)}: in-place {name} overwrites a tensor that other "
                              "layers read; the PT2E quantizer cannot annotate it")
        node.target = functional
    module.recompile()


def _pt2e_quantize(module, calibration: dict[str, np.ndarray], frames: int):
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = _quantizer()
    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for i in range(frames):  # the program has batch 1, as the .tflite will
            prepared(**{n: torch.from_numpy(a[i:i + 1]) for n, a in calibration.items()})
    return convert_pt2e(prepared, fold_quantize=False), quantizer


def _quantizer():
    """litert-torch's PT2E quantizer (int8 per-channel symmetric weights, static int8
    activations) that also annotates every tensor ``add`` it leaves out. It finds adds by
    their source function, which ``torch.export`` no longer records for torchvision's
    residual ``result += input``: those would stay float between a DEQUANTIZE and a QUANTIZE,
    which no integer-only target wants."""
    import torch
    from litert_torch.quantize.pt2e_quantizer import (
        PT2EQuantizer,
        get_symmetric_quantization_config,
    )
    from litert_torch.quantize.pt2e_quantizer_utils import (
        get_input_act_qspec,
        get_output_act_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation

    class IntegerAdds(PT2EQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            config = self.global_config
            for node in model.graph.nodes:
                if node.op != "call_function" or node.target != torch.ops.aten.add.Tensor:
                    continue
                done = node.meta.get("quantization_annotation")
                if done is not None and done._annotated:
                    continue
                inputs = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
                if not all(_is_float(model, a) for a in inputs):
                    continue
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={a: get_input_act_qspec(config) for a in inputs},
                    output_qspec=get_output_act_qspec(config), _annotated=True)
            return model

    return IntegerAdds().set_global(
        get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


def _is_float(model, node) -> bool:
    """Whether an FX node computes a floating-point tensor (constants included)."""
    value = node.meta.get("val")
    if value is None and node.op == "get_attr":
        value = getattr(model, str(node.target), None)
    return bool(getattr(value, "is_floating_point", lambda: False)())


def _litert_convert(module, sample: dict, quantizer) -> bytes:
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    try:
        model = litert_torch.convert(module, (), sample,
                                     quant_config=QuantConfig(pt2e_quantizer=quantizer))
    except Exception as err:
        raise WorkerError(_conversion_failure(module, err)) from err
    return model.model_content()


def _conversion_failure(module, err: Exception) -> str:
    """The converter's error, with the layers of the ATen ops it names."""
    text = f"{type(err).__name__}: {err}"
    ops = sorted(set(re.findall(r"aten[.:]+(\w+)", text)))
    layers = [f"{_layer(n)} ({n.target})" for n in module.graph.nodes
              if n.op == "call_function" and any(str(n.target).split(".")[1:2] == [op]
                                                 for op in ops)]
    where = f"; layers: {'; '.join(layers[:10])}" if layers else ""
    return f"the LiteRT converter (litert-torch) cannot take the network: {text[:2000]}{where}"


def _layer(node) -> str:
    """The module path of an FX node (``backbone.features.3``), else its name."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        return list(stack.values())[-1][0] or node.name
    return node.name


# ------------------------------------------------------------------------------ flatbuffer


def _schema():
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def with_metadata(content: bytes, entries: dict[str, str]) -> bytes:
    """``content`` with ``entries`` added to the model's ``metadata`` (name -> UTF-8 buffer),
    as TFLite's metadata writers store theirs, and short tensor names
    (:func:`compact_tensor_names`)."""
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    compact_tensor_names(model)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, text in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(text.encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        meta = schema.MetadataT()
        meta.name = name
        meta.buffer = len(model.buffers) - 1
        model.metadata.append(meta)
    builder = flatbuffers.Builder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


def compact_tensor_names(model) -> None:
    """Each inner tensor named after its layer (:func:`layer_name`, ``net.backbone.features.5``)
    or ``t<index>``; inputs and outputs keep theirs. The converter's names spell out every
    module's class (``tinytracker.models.tinytracker.TinyTracker/...Conv2d_0;1``): 61 kB of
    the default TinyTracker's 0.69 MB, flash a microcontroller would spend on strings."""
    for graph in model.subgraphs:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, tensor in enumerate(graph.tensors):
            if i in keep:
                continue
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
            short = layer_name(name)
            tensor.name = short if short != name else f"t{i}"


def model_summary(content: bytes) -> dict[str, Any]:
    """Operators (with counts), and every input and output with dtype, shape, scale and
    zero point, as LiteRT's interpreter reads the file."""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=content)
    except (RuntimeError, ValueError) as err:  # the converter wrote an op LiteRT cannot run
        missing = sorted(set(_MISSING_OP.findall(str(err))))
        if not missing:
            raise
        named = _named(content, missing)
        raise WorkerError("the LiteRT converter (litert-torch) wrote operators that LiteRT has "
                          f"no kernel for: {named}. Change those layers") from err
    ops: dict[str, int] = {}
    for op in interpreter._get_ops_details():
        ops[op["op_name"]] = ops.get(op["op_name"], 0) + 1

    signature = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner() if signature else None
    keys = {}  # tensor index -> the signature's name for it (the batch field, gaze_cm)
    if runner is not None:
        for name, detail in (*runner.get_input_details().items(),
                             *runner.get_output_details().items()):
            keys[detail["index"]] = name

    def tensor(detail: dict) -> dict[str, Any]:
        scale, zero_point = detail["quantization"]
        return {"name": detail["name"], "key": keys.get(detail["index"]),
                "shape": [int(s) for s in detail["shape"]],
                "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale),
                "zero_point": int(zero_point)}

    return {"operators": dict(sorted(ops.items())),
            "float_tensors": sum(1 for t in interpreter.get_tensor_details()
                                 if np.dtype(t["dtype"]) == np.float32),
            "inputs": [tensor(d) for d in interpreter.get_input_details()],
            "outputs": [tensor(d) for d in interpreter.get_output_details()],
            "signature": signature}


def layer_name(tensor: str) -> str:
    """The PyTorch module path of the layer that wrote a tensor: the converter names tensors
    after the module stack, ``pkg.Root/pkg.Class_attr/.../pkg.Class_attr;N``, from which
    ``net.backbone.features.5``; a name in another form comes back as it is."""
    parts = tensor.split(";")[0].split("/")[1:]
    # class names are CamelCase (a private one with a leading "_"); attributes may hold "_"
    attrs = [p.rsplit(".", 1)[-1].lstrip("_").split("_", 1) for p in parts]
    if not attrs or any(len(a) != 2 or not a[1] for a in attrs):
        return tensor
    return ".".join(a[1] for a in attrs)


def _named(content: bytes, ops: list[str]) -> str:
    """``OP at layer, layer; OP2 at ...`` for the given builtin operators of the file."""
    layers = operator_layers(content)
    return "; ".join(f"{op} at {', '.join(sorted(set(layers.get(op, ['?'])))[:6])}"
                     for op in ops)


def operator_layers(content: bytes) -> dict[str, list[str]]:
    """Builtin operator name -> the layers (:func:`layer_name`) its instances compute."""
    schema = _schema()
    model = schema.Model.GetRootAs(content, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.Subgraphs(0)
    out: dict[str, list[str]] = {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        if kind == "CUSTOM" and code.CustomCode():
            kind = code.CustomCode().decode()
        out.setdefault(kind, []).extend(layer_name(graph.Tensors(op.Outputs(j)).Name().decode())
                                        for j in range(op.OutputsLength()))
    return out


# ------------------------------------------------------------------------------ micro


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """What C/C++ code prints to stdout and stderr inside the block (TFLite Micro reports
    its arena and its errors there, not to Python)."""
    libc = ctypes.CDLL(None)
    text: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        try:
            for fd in saved:
                os.dup2(tmp.fileno(), fd)
            yield text
        finally:
            libc.fflush(None)
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            text.append(tmp.read().decode(errors="replace"))


_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '(\w+)'")


def _micro(args: argparse.Namespace) -> dict[str, Any]:
    from tflite_micro.python.tflite_micro import runtime

    content = Path(args.model).read_bytes()
    inputs = np.load(args.inputs)
    count = len([f for f in inputs.files if f.startswith("input_")])
    feeds = [inputs[f"input_{i}"] for i in range(count)]
    n_out = output_count(content)
    # plenty for a first run: the recording allocator then says what was used
    first_arena = max(16 * len(content), 4 * 1024 * 1024)
    with captured_native_output() as text:
        try:
            interpreter = runtime.Interpreter.from_bytes(content, arena_size=first_arena)
            _invoke(interpreter, [f[:1] for f in feeds], n_out)
            interpreter.print_allocations()
            failure = None
        except (RuntimeError, ValueError) as err:
            failure = err
    printed = "".join(text)
    if failure is not None:
        raise WorkerError(_micro_failure(content, printed, failure))
    match = _ARENA.search(printed)
    if not match:
        raise WorkerError(f"TFLite Micro printed no arena figure: {printed[-1500:]}")
    arena = int(match.group(1))
    # the figure is what the allocator used; a firmware would give exactly that: check it runs
    interpreter = runtime.Interpreter.from_bytes(content, arena_size=arena)
    outputs: list[list[np.ndarray]] = []
    t0 = time.perf_counter()
    frames = len(feeds[0])
    for i in range(frames):
        outputs.append(_invoke(interpreter, [f[i:i + 1] for f in feeds], n_out))
    seconds = time.perf_counter() - t0
    np.savez(args.outputs, **{f"output_{j}": np.concatenate([o[j] for o in outputs])
                              for j in range(len(outputs[0]))})
    return {"arena_bytes": arena, "arena_checked": True, "all_ops_supported": True,
            "frames": frames, "ms_per_frame": 1000 * seconds / max(frames, 1),
            "operators": sorted(operator_layers(content))}


def _invoke(interpreter, feeds: list[np.ndarray], outputs: int) -> list[np.ndarray]:
    for i, feed in enumerate(feeds):
        interpreter.set_input(feed, i)
    interpreter.invoke()
    return [np.array(interpreter.get_output(j)) for j in range(outputs)]


def output_count(content: bytes) -> int:
    return _schema().Model.GetRootAs(content, 0).Subgraphs(0).OutputsLength()


def _micro_failure(content: bytes, printed: str, err: Exception) -> str:
    missing = sorted(set(_MISSING_OP.findall(printed)))
    if missing:
        return (f"TFLite Micro has no kernel for {', '.join(missing)}: "
                f"{_named(content, missing)}. Change those layers, or run the file in LiteRT "
                "(not on a microcontroller)")
    lines = [ln for ln in printed.splitlines() if ln.strip()][-8:]
    return f"TFLite Micro could not run the file: {err}; it printed: {' | '.join(lines)}"


if __name__ == "__main__":
    sys.exit(main())
