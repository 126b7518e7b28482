"""``python -m tinytracker.export format=tflite``: litert-torch's converter, LiteRT and TFLite
Micro, all real.

The converter and TFLite Micro live in their own environment, ``.venv-litert/`` at the
repository root (README "Quick start"); tests that run them skip, saying how to create it,
where it is absent, and fail under ``CI=true`` (CI creates it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import REPO, SMALL_DATA, read_metrics, run_module, train_in_process
from tinytracker.export.errors import ExportError
from tinytracker.export.litert_env import (
    INSTALL_COMMAND,
    PYTHON_ENV,
    VENV,
    find_litert_python,
    run_worker,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EVAL_DATA = [a for a in SMALL_DATA if not a.startswith("data.batch_size")]
PAPER_QUANT_BUDGET_CM = 0.16  # TinyTracker paper: INT8 within 0.16 cm of the float model
CALIBRATION = "tflite.calibration_images=32"

# skips saying how to create .venv-litert where it is absent; fails under CI=true (conftest)
needs_litert = pytest.mark.usefixtures("litert_python")


def _export_in_process(out: Path, *overrides: str) -> dict:
    from tests.conftest import compose_config
    from tinytracker.export.__main__ import export

    return export(compose_config("export", *EVAL_DATA, *overrides, out_dir=out), out)


@pytest.fixture(scope="module")
def late_ckpt(tmp_path_factory, cache_dir) -> dict:
    """The default model (TinyTracker, 64 px, ``position=late``), 3 short epochs."""
    out = tmp_path_factory.mktemp("late-run")
    train_in_process(out, *SMALL_DATA, "trainer.max_epochs=3", "logger=none")
    return read_metrics(out)


@pytest.fixture(scope="module")
def tiny_s_ckpt(tmp_path_factory, cache_dir) -> dict:
    """TinyTrackerS as the authors built it (96 px grey, the grid embedding as a second
    input: ``position=input``), 3 short epochs."""
    out = tmp_path_factory.mktemp("tts-run")
    train_in_process(out, "+experiment=tinytracker_s", *SMALL_DATA, "trainer.max_epochs=3",
                     "logger=none")
    return read_metrics(out)


def _metadata(path: Path) -> dict[str, str]:
    """The file's metadata entries, read with LiteRT's flatbuffer schema (not our reader)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(path.read_bytes(), 0)
    out = {}
    for i in range(model.MetadataLength()):
        meta = model.Metadata(i)
        data = model.Buffers(meta.Buffer()).DataAsNumpy()
        out[meta.Name().decode()] = bytes(data).decode(errors="replace")
    return out


def _litert_test_error(path: Path, ckpt: str) -> float:
    """The file's test error computed here from scratch: the test loader's batches, NHWC,
    quantized with the file's own input parameters, LiteRT, the output dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    from tests.conftest import compose_config
    from tinytracker.assemble import checkpoint_data
    from tinytracker.models.checkpoint import module_from_checkpoint

    module = module_from_checkpoint(ckpt)
    _, loader = checkpoint_data(compose_config("export", *EVAL_DATA).data, module, "test")
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    inputs = runner.get_input_details()
    (out_detail,) = runner.get_output_details().values()
    errors = []
    for batch in loader:
        for i in range(len(batch["gaze_cm"])):
            feed = {}
            for key, detail in inputs.items():
                x = batch[key][i:i + 1].float()
                x = x.permute(0, 2, 3, 1) if x.dim() == 4 else x
                scale, zero = detail["quantization"]
                feed[key] = np.clip(np.round(x.numpy() / scale) + zero, -128, 127).astype(np.int8)
            q = runner(**feed)["gaze_cm"]
            scale, zero = out_detail["quantization"]
            gaze = (q.astype(np.float32) - zero) * scale
            errors.append(np.linalg.norm(gaze[0] - batch["gaze_cm"][i].numpy()))
    return float(np.mean(errors))


def _check_export(result: dict, metrics: dict, out: Path, keys: list[str],
                  shapes: list[list[int]]) -> None:
    path = out / "model.tflite"
    assert result["format"] == "tflite" and result["path"] == str(path)
    assert result["size_bytes"] == path.stat().st_size
    assert result["inputs"] == keys and result["outputs"] == ["gaze_cm"]
    # full integer: int8 in, int8 out, no float tensor anywhere
    assert [(t["key"], t["dtype"], t["shape"]) for t in result["tflite/inputs"]] == \
        [(k, "int8", s) for k, s in zip(keys, shapes, strict=True)]
    assert result["tflite/output_dtype"] == "int8" and result["tflite/output_scale_cm"] > 0
    assert result["tflite/float_tensors"] == 0
    assert "DEQUANTIZE" not in result["tflite/operators"]
    # TFLite Micro: every operator, the arena measured and then run with exactly that
    assert result["tflite/micro/all_ops_supported"] is True
    assert result["tflite/micro/arena_checked"] is True
    assert 10_000 < result["tflite/micro/arena_bytes"] < 2_000_000
    # its kernels round as LiteRT's reference kernels: at most one output step apart
    assert result["tflite/micro/max_steps_from_litert_reference"] <= 1
    assert abs(result["tflite/micro/test/error_cm"] - result["test/error_cm"]) \
        <= 2 * result["tflite/output_scale_cm"]
    # the checkpoint side is what training tested; the file is within the paper's INT8 budget
    assert result["test/error_cm_checkpoint"] == pytest.approx(metrics["test/error_cm"],
                                                               abs=1e-4)
    assert result["test/frames"] == metrics["data/test_frames"]
    assert abs(result["test/error_cm_increase"]) <= PAPER_QUANT_BUDGET_CM
    assert result["tflite/max_abs_diff_to_checkpoint_cm"] >= \
        result["tflite/mean_abs_diff_to_checkpoint_cm"] > 0
    # the input spec travels in the file, as in the ONNX export
    meta = _metadata(path)
    module_spec = torch.load(metrics["checkpoint"], map_location="cpu",
                             weights_only=True)["hyper_parameters"]["input_spec"]
    assert json.loads(meta["tinytracker.input_spec"]) == dict(module_spec)
    assert meta["tinytracker.inputs"] == ",".join(keys)
    assert "NHWC" in meta["tinytracker.layout"]
    assert json.loads(meta["tinytracker.quantization"])["format"] == "int8"


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_litert
def test_default_tinytracker_exports_full_int8_that_runs_in_litert_and_tflite_micro(
        tmp_path, late_ckpt):
    """The command as a user runs it, on the default model (face and face_box in)."""
    out = tmp_path / "export"
    run_module("tinytracker.export", f"ckpt_path={late_ckpt['checkpoint']}", "format=tflite",
               f"out_dir={out}", CALIBRATION, *EVAL_DATA, env=ONE_THREAD)
    result = json.loads((out / "export.json").read_text())
    _check_export(result, late_ckpt, out, ["face", "face_box"], [[1, 64, 64, 3], [1, 4]])
    assert result["quantized"] is False and "tflite/qat_carried" not in result
    assert result["tflite/calibration_images"] == 32
    # computed again here, from the file alone: the same error
    assert _litert_test_error(out / "model.tflite", late_ckpt["checkpoint"]) == \
        pytest.approx(result["test/error_cm"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_litert
def test_tinytracker_s_with_its_grid_embedding_stacked_runs_in_tflite_micro(tmp_path, tiny_s_ckpt):
    """TinyTrackerS as the authors' file has it (96 px grey + the grid embedding)."""
    out = tmp_path / "export"
    result = _export_in_process(out, f"ckpt_path={tiny_s_ckpt['checkpoint']}",
                                "format=tflite", CALIBRATION)
    # one input, the grid embedding stacked after the grey channel, as in the authors' file
    _check_export(result, tiny_s_ckpt, out, ["face_and_grid_embedding"], [[1, 96, 96, 3]])
    # TinyTrackerS is about a fifth of TinyTracker: so are its file and arena
    assert result["size_bytes"] < 250_000
    # the calibration images follow the export's seed: exporting again writes the same file
    again = tmp_path / "again"
    _export_in_process(again, f"ckpt_path={tiny_s_ckpt['checkpoint']}", "format=tflite",
                       CALIBRATION, "evaluate=false")
    assert (again / "model.tflite").read_bytes() == (out / "model.tflite").read_bytes()


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_litert
def test_qat_checkpoint_says_what_was_carried_and_what_recalibrated(tmp_path, qat_run):
    metrics = read_metrics(qat_run)
    out = tmp_path / "export"
    result = _export_in_process(out, f"ckpt_path={metrics['checkpoint']}", "format=tflite",
                                CALIBRATION)
    _check_export(result, metrics, out, ["face", "face_box"], [[1, 64, 64, 3], [1, 4]])
    assert result["quantized"] is True
    assert "QAT-trained float weights" in result["tflite/qat_carried"]
    assert "activation ranges from the calibration images" in result["tflite/qat_recalibrated"]
    assert "QAT" in json.loads(_metadata(out / "model.tflite")["tinytracker.quantization"])[
        "from"]


def test_litert_graph_computes_the_net(one_torch_thread):
    """The form the file is converted from (NHWC, the late head without concatenations)
    computes what the net computes, for every head kind and for two-input nets."""
    from tinytracker.export.litert_graph import LiteRTGraph
    from tinytracker.models import TinyTracker, TinyTrackerS

    torch.manual_seed(0)
    nets = [TinyTracker(position="late", late_film=True, image_size=64),
            TinyTracker(position="late", late_hidden=0, image_size=64),
            TinyTracker(position="late", late_hidden=16, late_film=False, image_size=64),
            TinyTracker(grid_embedding=True, position="input", image_size=64),
            TinyTrackerS(grid_embedding=True, position="input")]
    for net in nets:
        net.eval()
        head = net.host_head() if hasattr(net, "host_head") else None
        for param in (head.parameters() if head is not None else []):  # FiLM starts at zero
            param.data.add_(0.1 * torch.randn_like(param))
        inputs = [torch.rand(2, *net.input_shapes[k]) * 2 - 1 for k in net.input_keys]
        named = {k: x.permute(0, 2, 3, 1) if x.dim() == 4 else x
                 for k, x in zip(net.input_keys, inputs, strict=True)}
        if len(named) == 2 and "grid_embedding" in named:  # stacked: one input
            named = {"face_and_grid_embedding": torch.cat(list(named.values()), dim=-1)}
        with torch.no_grad():
            got = LiteRTGraph(net)(**named)["gaze_cm"]
            assert torch.allclose(got, net(*inputs), atol=1e-5), type(net).__name__


def test_missing_litert_environment_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.delenv(PYTHON_ENV, raising=False)
    with pytest.raises(ExportError) as err:
        find_litert_python(None, search_dirs=[tmp_path / "a", tmp_path / "b"])
    message = str(err.value)
    assert str(tmp_path / "a" / VENV) in message and str(tmp_path / "b" / VENV) in message
    assert INSTALL_COMMAND in message
    assert "'litert-torch==" in INSTALL_COMMAND and "'tflite-micro==" in INSTALL_COMMAND


def test_the_readme_install_command_creates_the_litert_environment():
    install = (REPO / "README.md").read_text().split("<!-- quick start: install -->")[1]
    assert INSTALL_COMMAND in install.split("```")[1]


def test_an_environment_without_the_converter_is_named_as_such(monkeypatch):
    import sys

    monkeypatch.setenv(PYTHON_ENV, sys.executable)  # the training environment: no litert-torch
    with pytest.raises(ExportError) as err:
        find_litert_python(None, search_dirs=[])
    assert f"{PYTHON_ENV}={sys.executable}" in str(err.value)
    assert "lacks litert_torch" in str(err.value) and INSTALL_COMMAND in str(err.value)


def test_configured_python_that_is_missing_is_named_before_any_work(tmp_path, float_run):
    bad = tmp_path / "nowhere" / "python"
    with pytest.raises(ExportError) as err:
        _export_in_process(tmp_path, f"ckpt_path={float_run['checkpoint']}", "format=tflite",
                           f"tflite.python={bad}")
    assert f"tflite.python={bad}" in str(err.value) and INSTALL_COMMAND in str(err.value)
    assert not (tmp_path / "export.json").exists()
    assert not (tmp_path / "model.tflite").exists()


class _Layers(nn.Module):
    """A convolution then ``act``: GELU (TFLite Micro has no kernel) or a sort (LiteRT has
    none for the StableHLO sort the converter writes)."""

    def __init__(self, act: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.act = nn.GELU() if act == "gelu" else _Sort()

    def forward(self, face: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.act(self.conv(face.permute(0, 3, 1, 2)))
        return {"gaze_cm": x.mean(dim=(2, 3))[:, :2]}


class _Sort(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=3).values


def _convert(tmp_path: Path, act: str, python: Path) -> Path:
    program = torch.export.export(_Layers(act).eval(), (), {"face": torch.rand(1, 16, 16, 3)})
    torch.export.save(program, tmp_path / "model.pt2")
    np.savez(tmp_path / "calibration.npz",
             face=np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32))
    (tmp_path / "metadata.json").write_text("{}")
    run_worker(python, "convert", 600, program=tmp_path / "model.pt2",
               calibration=tmp_path / "calibration.npz", metadata=tmp_path / "metadata.json",
               out=tmp_path / "model.tflite")
    return tmp_path / "model.tflite"


@pytest.mark.slow
def test_an_operator_tflite_micro_lacks_is_named_with_its_layer(tmp_path, litert_python):
    model = _convert(tmp_path, "gelu", litert_python)
    np.savez(tmp_path / "in.npz", input_0=np.zeros((1, 16, 16, 3), np.int8))
    with pytest.raises(ExportError) as err:
        run_worker(litert_python, "micro", 600, model=model, inputs=tmp_path / "in.npz",
                   outputs=tmp_path / "out.npz")
    assert "TFLite Micro has no kernel for GELU: GELU at act" in str(err.value)


@pytest.mark.slow
def test_an_operator_the_converter_cannot_give_litert_is_named(tmp_path, litert_python):
    with pytest.raises(ExportError) as err:
        _convert(tmp_path, "sort", litert_python)
    assert "LiteRT has no kernel for: STABLEHLO_SORT at act" in str(err.value)
