"""``python -m tinytracker.export``: INT8 (QCDQ) and float ONNX, run by the real ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_module
from onnx import numpy_helper

from tests.conftest import REPO, SMALL_DATA, read_metrics, run_module
from tinytracker.assemble import checkpoint_data
from tinytracker.export.__main__ import ExportError, export
from tinytracker.models.checkpoint import CheckpointError, module_from_checkpoint
from tinytracker.quant.checkpoints import CheckpointKindError

# In-process training here: one torch thread, so a second job on 2 cores does not thrash.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# One thread per run: on a small shared machine, two runs with two OpenMP threads each thrash.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
MAX_INT8_ONNX_BYTES = 608_000
EVAL_DATA = [a for a in SMALL_DATA if not a.startswith("data.batch_size")]


@pytest.fixture(scope="module")
def qat_short(qat_run) -> dict:
    """The session's short real QAT run (conftest): 2 float epochs, 2 QAT epochs."""
    return read_metrics(qat_run)


def _export_cli(ckpt: str, out: Path, *args: str, check: bool = True):
    return run_module("tinytracker.export", f"ckpt_path={ckpt}", "format=onnx", f"out_dir={out}",
                      *EVAL_DATA, *args, check=check, env=ONE_THREAD)


def _test_batch(ckpt: str) -> dict[str, torch.Tensor]:
    """The first test batch, built as the export built it (data config + input_spec)."""
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[f"ckpt_path={ckpt}", *EVAL_DATA,
                                           f"paths.root_dir={REPO}"])
    _, loader = checkpoint_data(cfg.data, module_from_checkpoint(ckpt), "test")
    return next(iter(loader))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_qat_checkpoint_exports_int8_onnx_matching_pytorch(tmp_path, qat_short):
    ckpt = qat_short["checkpoint"]
    _export_cli(ckpt, tmp_path)
    result = json.loads((tmp_path / "export.json").read_text())
    path = tmp_path / "model.onnx"

    assert result["quantized"] is True
    assert result["size_bytes"] == path.stat().st_size <= MAX_INT8_ONNX_BYTES
    # parity on the whole test set: within one output step, test errors within 0.01 cm. The
    # default (model.position=late) ends in its host head, which stays float: no output step;
    # its quantized features are exact, so the outputs agree to float rounding.
    step = result["parity/output_step_cm"]
    module = module_from_checkpoint(ckpt)
    late = module.net.head is not None  # BrevitasNet: the float host head of a late net
    assert (step is None) == late
    tol = 1e-3 if late else step  # conf/export.yaml parity_float_tol_cm
    assert result["parity/max_abs_diff_cm"] <= tol
    assert abs(result["test/error_cm"] - result["test/error_cm_pytorch"]) <= 0.01
    # the PyTorch side is the model the training run tested
    assert result["test/error_cm_pytorch"] == pytest.approx(qat_short["test/error_cm"], abs=1e-4)
    assert result["test/frames"] == qat_short["data/test_frames"]

    spec = module.hparams["input_spec"]
    inputs = ["face", "face_box"] if late else (
        ["face", "grid_embedding"] if spec["grid_embedding"] else ["face"])
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == inputs == result["inputs"]
    assert [o.name for o in model.graph.output] == ["gaze_cm"]
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Gemm"} <= ops
    kernels = [numpy_helper.to_array(t) for t in model.graph.initializer if len(t.dims) >= 2]
    # every kernel int8 but those of a late net's float host head
    host = [p for p in module.net.head.parameters() if p.ndim >= 2] if late else []
    assert sum(k.dtype == np.int8 for k in kernels) > 0
    assert sum(k.dtype != np.int8 for k in kernels) == len(host)
    meta = {p.key: p.value for p in model.metadata_props}
    for key in ("face_size", "grey", "mean", "std", "grid_embedding"):
        assert json.loads(meta[key]) == spec[key], key
    assert json.loads(meta["tinytracker.input_spec"]) == spec
    assert json.loads(meta["tinytracker.quantization"])["weight_bits"] == 8

    # independently of export.json: ONNX Runtime on one test batch against the checkpoint
    # (the QDQ graph as written; ONNX Runtime's fused integer kernels depend on the CPU)
    batch = _test_batch(ckpt)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    onnx_out = session.run(["gaze_cm"], {k: batch[k].numpy() for k in inputs})[0]
    with torch.no_grad():
        torch_out = module.net(*[batch[k] for k in inputs]).numpy()
    assert np.abs(onnx_out - torch_out).max() <= tol
    assert "ort_all/test/error_cm" in result


@pytest.mark.slow
def test_float_checkpoint_exports_float_onnx(tmp_path, qat_short):
    result = _export_in_process(tmp_path, f"ckpt_path={qat_short['quant/float_checkpoint']}")
    assert json.loads((tmp_path / "export.json").read_text()) == result
    assert result["quantized"] is False
    assert result["parity/output_step_cm"] is None
    assert result["parity/max_abs_diff_cm"] < 1e-3
    assert abs(result["test/error_cm"] - result["test/error_cm_pytorch"]) < 1e-4
    model = onnx.load(str(tmp_path / "model.onnx"))
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in model.graph.node}
    assert result["size_bytes"] > 4 * 400_000  # float32 weights
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["face_size"]) == 64  # the default run's input
    assert json.loads(meta["tinytracker.quantization"]) == {"format": "float32"}


def _export_in_process(tmp_path, *overrides: str):
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, f"out_dir={tmp_path}",
                                           f"paths.output_dir={tmp_path}",
                                           f"paths.root_dir={REPO}", *overrides])
    return export(cfg, tmp_path)


def test_float_checkpoint_where_int8_is_required_is_refused(tmp_path, qat_short):
    ckpt = qat_short["quant/float_checkpoint"]
    with pytest.raises(CheckpointKindError, match="is a float checkpoint") as err:
        _export_in_process(tmp_path, f"ckpt_path={ckpt}", "quantized=true")
    assert "+experiment=qat" in str(err.value)
    assert not (tmp_path / "model.onnx").exists()


def test_quantized_checkpoint_where_float_is_required_is_refused(tmp_path, qat_short):
    with pytest.raises(CheckpointKindError, match="is a quantized checkpoint"):
        _export_in_process(tmp_path, f"ckpt_path={qat_short['checkpoint']}", "quantized=false")


def test_unknown_format_is_refused(tmp_path, qat_short):
    with pytest.raises(ExportError,
                       match=r"format must be one of \('onnx', 'imx500', 'tflite'\)"):
        _export_in_process(tmp_path, f"ckpt_path={qat_short['checkpoint']}", "format=coreml")
    assert not (tmp_path / "export.json").exists()


def test_checkpoint_not_matching_its_config_names_the_keys(tmp_path, qat_short):
    ckpt = torch.load(qat_short["checkpoint"], map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["net"]["float_net"]["width_mult"] = 0.75
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"does not match its model config") as err:
        _export_in_process(tmp_path, f"ckpt_path={bad}")
    assert "net.net.backbone" in str(err.value)


def _optimized_ops(path: Path, tmp_path: Path) -> list[str]:
    """Op types of the graph ONNX Runtime runs (extended level: fusions, no layout change)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def test_uint8_activations_fuse_every_layer_with_identical_outputs(tmp_path):
    """The default export writes activations as uint8: the same numbers as Brevitas' int8/uint8
    mix, and every convolution, residual sum and linear layer runs as an integer kernel."""
    from tinytracker.export.onnx import export_onnx
    from tinytracker.models import TinyTracker
    from tinytracker.quant.brevitas import BrevitasNet, calibrate

    torch.manual_seed(0)
    net = TinyTracker(in_channels=3, grid_embedding=True, image_size=64, width_mult=0.5)
    qnet = BrevitasNet(net)
    keys = tuple(net.input_keys)
    batches = [tuple(torch.randn(8, *net.input_shapes[k]) for k in keys) for _ in range(3)]
    calibrate(qnet, batches, forward=lambda m, b: m(*b))
    u8 = export_onnx(qnet, tmp_path / "u8.onnx")
    mixed = export_onnx(qnet, tmp_path / "mixed.onnx", activation_type="as_trained")

    def zero_point_types(path: Path) -> set[int]:
        model = onnx.load(str(path))
        inits = {i.name: i for i in model.graph.initializer}
        return {inits[n.input[2]].data_type for n in model.graph.node
                if n.op_type == "QuantizeLinear"}  # activations only: weights are constants

    assert zero_point_types(mixed) == {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    assert zero_point_types(u8) == {onnx.TensorProto.UINT8}
    meta = json.loads({p.key: p.value for p in onnx.load(str(u8)).metadata_props}
                      ["tinytracker.quantization"])
    assert meta["activation_type"] == "uint8"

    ops = _optimized_ops(u8, tmp_path)
    assert "Conv" not in ops and "Gemm" not in ops and "Add" not in ops, ops
    assert ops.count("QLinearConv") == sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())

    rng = np.random.default_rng(1)
    feed = {k: rng.standard_normal((16, *net.input_shapes[k])).astype(np.float32) for k in keys}
    outs = {}
    for name, path in (("u8", u8), ("mixed", mixed)):
        for level in ("ORT_ENABLE_BASIC", "ORT_ENABLE_ALL"):
            options = ort.SessionOptions()
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            outs[name, level] = session.run(["gaze_cm"], feed)[0]
    # the QDQ graph as written: the same numbers, bit for bit
    np.testing.assert_array_equal(outs["u8", "ORT_ENABLE_BASIC"], outs["mixed", "ORT_ENABLE_BASIC"])
    # fused integer kernels (power-of-two scales: exact requantization) agree with it too
    np.testing.assert_array_equal(outs["u8", "ORT_ENABLE_ALL"], outs["u8", "ORT_ENABLE_BASIC"])
    with torch.no_grad():
        torch_out = qnet(*[torch.from_numpy(feed[k]) for k in keys]).numpy()
    assert np.abs(outs["u8", "ORT_ENABLE_ALL"] - torch_out).max() <= qnet.output_step


def test_unknown_activation_type_is_refused(tmp_path):
    from tinytracker.export.onnx import export_onnx
    from tinytracker.models import TinyTracker

    expected = r"activation_type must be one of \('uint8', 'as_trained'\), got 'int4'"
    with pytest.raises(ValueError, match=expected):
        export_onnx(TinyTracker(image_size=64), tmp_path / "m.onnx", activation_type="int4")


def test_the_grid_convention_and_resize_filter_travel_in_the_onnx_file(tmp_path):
    """An imported model's conventions (authors_tf, bilinear) reach predict through ONNX too;
    a file without them (exported before they were recorded) means ours."""
    from tinytracker.export.onnx import export_onnx
    from tinytracker.models import TinyTracker
    from tinytracker.onnx_runner import OnnxRunner

    record = {"face_size": 32, "eye_size": 224, "grey": False, "grid_embedding": True,
              "mean": 0.5, "std": 0.5, "grid_convention": "authors_tf",
              "interpolation": "bilinear"}
    net = TinyTracker(image_size=32, grid_embedding=True)
    spec = OnnxRunner(export_onnx(net, tmp_path / "a.onnx", record)).spec
    assert (spec.grid_convention, spec.interpolation) == ("authors_tf", "bilinear")
    old = {k: v for k, v in record.items() if k not in ("grid_convention", "interpolation")}
    spec = OnnxRunner(export_onnx(net, tmp_path / "b.onnx", old)).spec
    assert (spec.grid_convention, spec.interpolation) == ("cell_edges", "area")


def test_reading_onnx_loads_neither_brevitas_nor_mct(tmp_path):
    """Opening and running an ONNX file (calibrate, predict) must not import the quantizers."""
    code = ("import sys; import tinytracker.export.onnx, tinytracker.calibrate.model_outputs; "
            "print([m for m in sys.modules if m.split('.')[0] in "
            "('brevitas', 'model_compression_toolkit', 'mct_quantizers')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout
