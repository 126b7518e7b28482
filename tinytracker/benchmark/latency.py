"""Batch-1 inference latency: our INT8 ONNX model in ONNX Runtime, our float model in PyTorch,
our full-INT8 ``.tflite`` (``format=tflite``) and the authors' ``TinyTracker.tflite`` in LiteRT,
on the same machine in the same run.

Our models are built at the released file's input (128x128, RGB + 2 grid-embedding channels
for TinyTracker), so all three run the same architecture on the same input size. Weights do
not change the latency; the INT8 model is calibrated on a few frames so its scales are sane.
ONNX Runtime is tried with each session setting in :data:`ORT_SETTINGS` and the fastest is
reported, with all of them kept in the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinytracker.benchmark.timing import latencies_s, percentile_ms, torch_threads

# (name, graph optimisation level, spin-waiting intra-op threads)
ORT_SETTINGS = (
    ("all", "ORT_ENABLE_ALL", True),
    ("all_nospin", "ORT_ENABLE_ALL", False),
    ("extended", "ORT_ENABLE_EXTENDED", True),
    ("basic", "ORT_ENABLE_BASIC", True),
)


def _stats(samples_s: list[float], prefix: str) -> dict[str, float]:
    return {f"{prefix}/p50_ms": percentile_ms(samples_s, 50),
            f"{prefix}/p90_ms": percentile_ms(samples_s, 90)}


def ort_session(path: Path, threads: int, level: str, spin: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_latency(path: Path, feed: dict[str, np.ndarray], threads: int, warmup: int,
                 runs: int, root: str = "latency") -> dict[str, Any]:
    prefix = f"{root}/onnx_int8/threads{threads}"
    out: dict[str, Any] = {}
    best: tuple[float, str] | None = None
    for name, level, spin in ORT_SETTINGS:
        session = ort_session(path, threads, level, spin)
        stats = _stats(latencies_s(lambda s=session: s.run(None, feed), warmup, runs),
                       f"{prefix}/settings/{name}")
        out.update(stats)
        p50 = stats[f"{prefix}/settings/{name}/p50_ms"]
        if best is None or p50 < best[0]:
            best = (p50, name)
    assert best is not None
    out.update({f"{prefix}/p50_ms": best[0], f"{prefix}/setting": best[1],
                f"{prefix}/p90_ms": out[f"{prefix}/settings/{best[1]}/p90_ms"]})
    return out


def torch_latency(net: torch.nn.Module, inputs: tuple[torch.Tensor, ...], threads: int,
                  warmup: int, runs: int, root: str = "latency") -> dict[str, float]:
    net.eval()
    with torch_threads(threads), torch.inference_mode():
        samples = latencies_s(lambda: net(*inputs), warmup, runs)
    return _stats(samples, f"{root}/torch_fp32/threads{threads}")


def tflite_latency(path: Path, threads: int, warmup: int, runs: int,
                   root: str = "latency", name: str = "tflite") -> dict[str, float]:
    """LiteRT (XNNPACK) on ``threads``: every input set, then ``invoke``, per call."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    feeds = []
    for inp in interpreter.get_input_details():
        info = np.iinfo(inp["dtype"]) if np.issubdtype(inp["dtype"], np.integer) else None
        feeds.append((inp["index"], rng.integers(info.min, info.max + 1, inp["shape"],
                                                 dtype=inp["dtype"]) if info
                      else rng.standard_normal(inp["shape"]).astype(inp["dtype"])))

    def run() -> None:
        for index, x in feeds:
            interpreter.set_tensor(index, x)
        interpreter.invoke()

    return _stats(latencies_s(run, warmup, runs), f"{root}/{name}/threads{threads}")


def tflite_input_size(path: Path) -> tuple[int, int]:
    """``(size, channels)`` of the released model's NHWC input."""
    from ai_edge_litert.interpreter import Interpreter

    shape = Interpreter(model_path=str(path)).get_input_details()[0]["shape"]
    return int(shape[1]), int(shape[3])


def int8_onnx(float_net: torch.nn.Module, batches: list[tuple[torch.Tensor, ...]],
              path: Path) -> Path:
    """Calibrate the Brevitas INT8 wrapper of ``float_net`` and export it as QCDQ ONNX."""
    from tinytracker.export.onnx import export_onnx
    from tinytracker.quant.brevitas import BrevitasNet, calibrate

    qnet = BrevitasNet(float_net)
    calibrate(qnet, batches, forward=lambda m, b: m(*b))
    return export_onnx(qnet, path)


def int8_tflite(float_net: torch.nn.Module, batches: list[tuple[torch.Tensor, ...]],
                path: Path) -> Path:
    """``float_net`` as ``format=tflite`` converts it (full int8, PT2E calibrated on
    ``batches``) in the LiteRT environment; raises ``ExportError`` when that is absent."""
    from tinytracker.export.litert_env import find_litert_python
    from tinytracker.export.tflite import calibration_arrays, convert_net

    python = find_litert_python()
    convert_net(float_net, calibration_arrays(float_net, batches), path, python,
                timeout_s=1800, metadata={})
    return path


def latency_suite(float_net: torch.nn.Module, onnx_path: Path, tflite_path: Path | None,
                  threads: list[int], warmup: int, runs: int,
                  log: Callable[[str], None], root: str = "latency",
                  ours_tflite: Path | None = None) -> dict[str, Any]:
    """Every figure of one model, keyed ``<root>/{onnx_int8,torch_fp32,tflite,tflite_ours}/
    threads<t>/...`` (``tflite``: the authors' file; ``tflite_ours``: ``ours_tflite``, our net
    as ``format=tflite`` writes it, in the same LiteRT)."""
    keys = tuple(float_net.input_keys)
    rng = np.random.default_rng(0)
    feed = {k: rng.standard_normal((1, *float_net.input_shapes[k])).astype(np.float32)
            for k in keys}
    inputs = tuple(torch.from_numpy(feed[k]) for k in keys)
    out: dict[str, Any] = {}
    name = type(float_net).__name__
    for t in threads:
        log(f"latency, {name}, {t} thread(s): ONNX Runtime int8")
        out.update(onnx_latency(onnx_path, feed, t, warmup, runs, root))
        log(f"latency, {name}, {t} thread(s): PyTorch fp32")
        out.update(torch_latency(float_net, inputs, t, warmup, runs, root))
        if tflite_path is not None:
            log(f"latency, {name}, {t} thread(s): LiteRT {tflite_path.name}")
            out.update(tflite_latency(tflite_path, t, warmup, runs, root))
        if ours_tflite is not None:
            log(f"latency, {name}, {t} thread(s): LiteRT, ours ({ours_tflite.name})")
            out.update(tflite_latency(ours_tflite, t, warmup, runs, root, "tflite_ours"))
        if tflite_path is not None and ours_tflite is not None:
            out[f"{root}/tflite_ours_over_authors/threads{t}"] = (
                out[f"{root}/tflite_ours/threads{t}/p50_ms"]
                / out[f"{root}/tflite/threads{t}/p50_ms"])
    return out
