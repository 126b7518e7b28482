"""``python -m tinytracker.export format=imx500``: Sony MCT quantization and the real converter.

The converter (``imxconv-pt``) lives in its own environment, ``.venv-imx500/`` at the
repository root (README "IMX500 export"); tests that run it skip, saying how to create it,
where it is absent, and fail under ``CI=true`` (CI creates it).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from tests.conftest import REPO, SMALL_DATA, read_metrics, run_module, train_in_process
from tests.wandb_log import read_wandb_records, read_wandb_summary
from tinytracker.export.errors import ExportError
from tinytracker.export.imxconv import (
    CONVERTER_ENV,
    CONVERTER_VERSION,
    INSTALL_COMMAND,
    converter_dirs,
    find_converter,
    run_converter,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EVAL_DATA = [a for a in SMALL_DATA if not a.startswith("data.batch_size")]
MAX_MEMORY_BYTES = 1024 * 1024  # the budget for the default TinyTracker: 1.0 MB
PAPER_QUANT_BUDGET_CM = 0.16  # TinyTracker paper: INT8 within 0.16 cm of the float model


# skips saying how to create .venv-imx500 where it is absent; fails under CI=true (conftest)
needs_converter = pytest.mark.usefixtures("imx500_converter")


ONE_INPUT = "model.position=none"  # TinyTracker on the face alone: one sensor input


@pytest.fixture(scope="module")
def float_wandb_run(tmp_path_factory, cache_dir) -> Path:
    """A short real float training run of a one-input TinyTracker (what the IMX500 can feed),
    logged to offline W&B."""
    out = tmp_path_factory.mktemp("float-run")
    run_module("tinytracker.train", *SMALL_DATA, ONE_INPUT, f"out_dir={out}",
               "trainer.max_epochs=3", "logger=wandb", env=ONE_THREAD)
    return out


@pytest.fixture(scope="module")
def two_input_run(tmp_path_factory, cache_dir) -> Path:
    """One epoch of the paper's TinyTracker design (``model.position=input``): face +
    grid_embedding, two input tensors."""
    out = tmp_path_factory.mktemp("two-input-run")
    run_module("tinytracker.train", *SMALL_DATA, f"out_dir={out}", "trainer.max_epochs=1",
               "model.position=input",
               "trainer.limit_train_batches=2", "logger=csv", env=ONE_THREAD)
    return out


def _export_in_process(out: Path, *overrides: str):
    from tinytracker.export.__main__ import export

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, f"out_dir={out}",
                                           f"paths.output_dir={out}",
                                           f"paths.root_dir={REPO}", *overrides])
    return export(cfg, out)


@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_converter
def test_real_converter_packs_a_trained_tinytracker_that_fits(tmp_path, float_wandb_run):
    float_run = float_wandb_run
    metrics = read_metrics(float_run)
    out = tmp_path / "export"
    run_module("tinytracker.export", f"ckpt_path={metrics['checkpoint']}", "format=imx500",
               f"out_dir={out}", "imx500.calibration_images=32", *EVAL_DATA, env=ONE_THREAD)
    result = json.loads((out / "export.json").read_text())

    # packerOut.zip: what imx500-package on the Raspberry Pi takes
    packer = Path(result["imx500/packer_zip"])
    assert packer == out / "imx500" / "packerOut.zip" and packer.is_file()
    with zipfile.ZipFile(packer) as zf:
        assert {"dnnParams.xml", "l2staticData.bin", "manifest.json"} <= set(zf.namelist())
    assert result["imx500/packer_zip_size_bytes"] == packer.stat().st_size

    # the memory report, read here independently of the export code
    report = json.loads(Path(result["imx500/memory_report"]).read_text())["Memory Report"]
    assert report["Fit In Chip"] is True
    assert report["Memory Usage"] == f"{result['imx500/memory_usage_bytes']}B"
    assert result["imx500/fit_in_chip"] is True
    assert 0 < result["imx500/memory_usage_bytes"] <= MAX_MEMORY_BYTES
    assert (result["imx500/model_memory_bytes"] + result["imx500/runtime_memory_bytes"]
            <= result["imx500/memory_usage_bytes"])
    # the IMX500's 8 MB (the report gives 8 MiB less a 128-byte header: 8,388,480 B)
    assert 8_000_000 < result["imx500/chip_memory_bytes"] <= 8 * 1024 * 1024
    assert result["imx500/converter_version"] == CONVERTER_VERSION
    assert result["imx500/conversion_s"] > 0
    assert result["imx500/calibration_images"] == 32

    # dnnParams.xml: the camera's view of the network (one RGB input at the run's face size,
    # 64x64 by default, 2 values out)
    net = ET.parse(result["imx500/dnn_params"]).getroot().find("networks/network")
    inputs = [[int(d.get("size")) for d in t.iter("dimension")]
              for t in net.iter("inputTensor")]
    px = _face_px(metrics["checkpoint"])
    assert inputs == [[3, px, px]]
    with zipfile.ZipFile(packer) as zf:  # the packed copy says the same
        packed = ET.fromstring(zf.read("dnnParams.xml")).find("networks/network")
    assert len(list(packed.iter("inputTensor"))) == 1
    outputs = [[int(d.get("size")) for d in t.iter("dimension")]
               for t in net.iter("outputTensor")]
    assert outputs == [[2]]

    # accuracy: the checkpoint side is what training tested; the IMX500-bound model is close
    assert result["test/error_cm_checkpoint"] == pytest.approx(metrics["test/error_cm"],
                                                               abs=1e-4)
    assert result["test/frames"] == metrics["data/test_frames"]
    assert abs(result["test/error_cm"] - result["test/error_cm_checkpoint"]) \
        <= PAPER_QUANT_BUDGET_CM

    _check_camera_files(result, out, metrics["checkpoint"])
    _check_emulated_camera(result)
    _check_ort_sensor_graph_reproduces_pytorch(result, metrics["checkpoint"])

    # the numbers and packerOut.zip went to the training run's W&B run (resumed by id)
    train_run = next((float_run / "wandb").glob("offline-run-*"))
    run_id = train_run.name.rsplit("-", 1)[-1]
    export_runs = list((out / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(export_runs) == 1, list((out / "wandb").glob("*"))
    summary = read_wandb_summary(export_runs[0])
    assert summary["export/imx500/imx500/fit_in_chip"] is True
    assert summary["export/imx500/imx500/memory_usage_bytes"] == \
        result["imx500/memory_usage_bytes"]
    assert summary["export/imx500/test/error_cm"] == pytest.approx(result["test/error_cm"])
    log = next(export_runs[0].glob("*.wandb"))
    artifacts = [r.artifact for r in read_wandb_records(log)
                 if r.WhichOneof("record_type") == "artifact"]
    assert [a.type for a in artifacts] == ["model"]
    assert [e.path for e in artifacts[0].manifest.contents] == ["packerOut.zip"]


@pytest.fixture(scope="module")
def late_run(tmp_path_factory, cache_dir) -> Path:
    """A short real training run of TinyTracker with model.position=late."""
    out = tmp_path_factory.mktemp("late-run")
    run_module("tinytracker.train", *SMALL_DATA, "+experiment=position_late", f"out_dir={out}",
               "trainer.max_epochs=3", "logger=csv", env=ONE_THREAD)
    return out


@pytest.fixture(scope="module")
def late_export(tmp_path_factory, late_run, imx500_converter) -> Path:
    """The 8-bit format=imx500 export of ``late_run`` (the default position): its folder."""
    out = tmp_path_factory.mktemp("late-export") / "8bit"
    ckpt = read_metrics(late_run)["checkpoint"]
    run_module("tinytracker.export", f"ckpt_path={ckpt}", "format=imx500", f"out_dir={out}",
               "imx500.calibration_images=32", *EVAL_DATA, env=ONE_THREAD)
    return out


@pytest.mark.slow
@needs_converter
def test_late_model_exports_sensor_graph_and_head_that_reproduce_pytorch(late_run, late_export):
    """position=late: one sensor input, features out, the numpy head file next to deploy.json;
    head(ORT sensor graph) is the PyTorch model on test frames, and the emulated camera is
    within the paper's budget of the float model."""
    from tinytracker.assemble import checkpoint_data
    from tinytracker.checksum import file_sha256
    from tinytracker.deploy import camera
    from tinytracker.export.emulation import mct_onnx_session, session_graph
    from tinytracker.models.checkpoint import module_from_checkpoint

    ckpt = read_metrics(late_run)["checkpoint"]
    out = late_export
    result = json.loads((out / "export.json").read_text())
    net = ET.parse(result["imx500/dnn_params"]).getroot().find("networks/network")
    px = _face_px(ckpt)
    assert [[int(d.get("size")) for d in t.iter("dimension")]
            for t in net.iter("inputTensor")] == [[3, px, px]]
    assert result["inputs"] == ["face"] and result["outputs"] == ["features"]
    manifest, head = camera.load(result["imx500/deploy_json"])
    assert result["imx500/head"] == str(out / "imx500" / "head.npz")
    assert manifest.output.kind == "features" and head.feature_dim == manifest.output.size
    assert head.ckpt_sha256 == manifest.ckpt_sha256 == file_sha256(ckpt)
    assert result["imx500/fit_in_chip"] is True
    _check_emulated_camera(result)
    # ORT of MCT's ONNX vs MCT in PyTorch (the export's measure): a few feature steps
    step = manifest.output.scale
    assert result["imx500/ort_max_abs_diff_to_mct"] <= 4 * step  # measured: 2 steps

    module = module_from_checkpoint(ckpt).eval()
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, f"ckpt_path={ckpt}"])
    _, loader = checkpoint_data(cfg.data, module, "test")
    graph = session_graph(mct_onnx_session(result["onnx_path"]))
    host_head = module.net.host_head()
    diffs = []
    for batch in loader:
        face, box = batch["face"].float(), batch["face_box"].float()
        features = graph(face.numpy())
        gaze = head.apply(features, box.numpy())
        with torch.no_grad():
            # the file computes the checkpoint's own head, on the same features
            same = host_head(torch.cat([torch.from_numpy(features), box], dim=1)).numpy()
            expected = module.net(face, box).numpy()
        np.testing.assert_allclose(gaze, same, atol=1e-4)
        diffs.append(np.abs(gaze - expected))
    diff = np.concatenate(diffs)
    assert diff.mean() <= PAPER_QUANT_BUDGET_CM, diff.mean()


def _face_px(ckpt: str) -> int:
    """The face input size the checkpoint was trained at (its input spec)."""
    spec = torch.load(ckpt, map_location="cpu", weights_only=True)["hyper_parameters"]
    return int(spec["input_spec"]["face_size"])


def _check_camera_files(result: dict, out: Path, ckpt: str) -> None:
    """deploy.json next to packerOut.zip, read back as the Pi reads it, agreeing with
    dnnParams.xml (read here independently) and naming the checkpoint by its hash."""
    from tinytracker.checksum import file_sha256
    from tinytracker.deploy import camera
    from tinytracker.deploy.manifest import read_manifest

    path = Path(result["imx500/deploy_json"])
    assert path == out / "imx500" / "deploy.json"
    manifest = read_manifest(path)
    assert json.loads(path.read_text()) == asdict(manifest)  # every key read back
    assert camera.load(path) == (manifest, None)  # `none`: no head file
    assert result["imx500/head"] is None and not (out / "imx500" / "head.npz").exists()
    tensor = ET.parse(result["imx500/dnn_params"]).getroot().find(
        "networks/network/inputTensors/inputTensor")
    assert manifest.input.scale == float(tensor.get("scale"))
    px = _face_px(ckpt)
    assert (manifest.input.format, manifest.input.width, manifest.input.height) == \
        ("RGB", px, px)
    assert (manifest.input.mean, manifest.input.std) == (0.5, 0.5)
    assert manifest.roi.mode == "face" and manifest.roi.square
    assert manifest.output.kind == "gaze_cm" and manifest.output.units == "cm"
    assert manifest.output.scale == result["imx500/output_step"] > 0
    assert manifest.ckpt_sha256 == file_sha256(ckpt)


def _check_emulated_camera(result: dict) -> None:
    """The camera's own path (full frames, ROI, ISP, int8 input, ORT graph) on every test
    frame, within the paper's INT8 budget of the float model."""
    assert result["imx500/emulated_test_frames"] == result["test/frames"]
    emulated = result["imx500/emulated_test_error_cm"]
    assert emulated > 0
    assert abs(emulated - result["test/error_cm_float_weights"]) <= PAPER_QUANT_BUDGET_CM
    assert result["imx500/emulated_minus_float_cm"] == pytest.approx(
        emulated - result["test/error_cm_float_weights"])


def _check_ort_sensor_graph_reproduces_pytorch(result: dict, ckpt: str) -> None:
    """MCT's ONNX (the converter's input) in ONNX Runtime against the PyTorch checkpoint on
    test frames, and against MCT's own PyTorch model to one output step (what the export
    measured)."""
    from tinytracker.assemble import checkpoint_data
    from tinytracker.export.emulation import mct_onnx_session, session_graph
    from tinytracker.models.checkpoint import module_from_checkpoint

    step = result["imx500/output_step"]
    assert result["imx500/ort_max_abs_diff_to_mct"] <= step * (1 + 1e-4)
    module = module_from_checkpoint(ckpt).eval()
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, f"ckpt_path={ckpt}"])
    _, loader = checkpoint_data(cfg.data, module, "test")
    graph = session_graph(mct_onnx_session(result["onnx_path"]))
    diffs = []
    for batch in loader:
        with torch.no_grad():
            expected = module.net(batch["face"].float()).numpy()
        got = graph(batch["face"].float().numpy())
        assert np.allclose(got / step, np.round(got / step), atol=1e-3)  # on the int8 grid
        diffs.append(np.abs(got - expected))
    diff = np.concatenate(diffs)
    # MCT's 8-bit rounding against the float model: about one output step on average
    # (measured 1.1 steps on 40 subjects x 8 epochs; single frames move by several)
    assert diff.mean() <= 2 * step, (diff.mean(), step)


def test_two_input_checkpoint_is_refused_naming_the_deployable_choices(tmp_path,
                                                                       two_input_run):
    ckpt = read_metrics(two_input_run)["checkpoint"]
    with pytest.raises(ExportError) as err:
        _export_in_process(tmp_path, f"ckpt_path={ckpt}", "format=imx500")
    message = str(err.value)
    assert f"ckpt_path={ckpt}" in message
    assert "2 input tensors on the sensor (face, grid_embedding)" in message
    assert "model.position=none|late|frame" in message
    assert "exactly one" in message
    # nothing the camera could mistake for a deployable network was written
    assert not (tmp_path / "export.json").exists()
    assert not list(tmp_path.rglob("*.onnx")) and not list(tmp_path.rglob("packerOut.zip"))


class _DilatedStride(nn.Module):
    """A stride-2 dilated convolution: MCT quantizes it, the IMX500 cannot run it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, dilation=2)
        self.head = nn.Linear(8, 2)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(face)).mean((2, 3)))


@needs_converter
def test_layer_the_converter_rejects_is_named(tmp_path):
    from tinytracker.quant.mct import export_mct_onnx, quantize_for_imx500

    torch.manual_seed(0)
    calibration = [(torch.rand(4, 3, 32, 32) * 2 - 1,)]
    quantized = quantize_for_imx500(_DilatedStride().eval(), calibration)
    onnx_path = export_mct_onnx(quantized, tmp_path / "dilated.onnx", calibration[0])
    with pytest.raises(ExportError) as err:
        run_converter(find_converter(), onnx_path, tmp_path / "out")
    message = str(err.value)
    assert "rejected layers: /conv/layer/Conv (Conv)" in message
    assert "Stride > 1 with dilation > 1 are not supported" in message
    assert (tmp_path / "out" / "converter.log").is_file()


class _HugeInput(nn.Module):
    """Few weights, but a 640x640 input whose activations need more than the chip's 8 MB."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.head = nn.Linear(4, 2)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(face)).mean((2, 3)))


@pytest.mark.slow  # ~30 s of converter time; the quick tier runs the converter once (above)
@needs_converter
def test_network_too_big_for_the_chip_fails_with_the_memory_figures(tmp_path):
    from tinytracker.quant.mct import export_mct_onnx, quantize_for_imx500

    torch.manual_seed(0)
    calibration = [(torch.rand(1, 3, 640, 640) * 2 - 1,)]
    quantized = quantize_for_imx500(_HugeInput().eval(), calibration)
    onnx_path = export_mct_onnx(quantized, tmp_path / "huge.onnx", calibration[0])
    with pytest.raises(ExportError) as err:
        run_converter(find_converter(), onnx_path, tmp_path / "out")
    report_path = tmp_path / "out" / "huge_MemoryReport.json"
    report = json.loads(report_path.read_text())["Memory Report"]  # kept
    assert report["Fit In Chip"] is False
    needed_mb = int(report["Memory Usage"].rstrip("B")) / 2**20
    message = str(err.value)
    assert "does not fit in the IMX500's memory" in message
    assert f"{needed_mb:.2f} MB needed" in message and "of 8.00 MB on the chip" in message
    assert str(report_path) in message


def test_missing_converter_environment_says_how_to_create_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no imxconv-pt on PATH either
    monkeypatch.delenv(CONVERTER_ENV, raising=False)
    with pytest.raises(ExportError) as err:
        find_converter(None, search_dirs=[tmp_path / "a", tmp_path / "b"])
    assert str(tmp_path / "a" / ".venv-imx500") in str(err.value)
    assert str(tmp_path / "b" / ".venv-imx500") in str(err.value)
    assert INSTALL_COMMAND in str(err.value)
    assert "imx500-converter[pt]==" in INSTALL_COMMAND


def _fake_converter(path: Path) -> Path:
    """An executable file where imxconv-pt would be: the lookup only checks that one is there."""
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_converter_is_found_in_the_current_directory_then_the_checkout(tmp_path, monkeypatch):
    monkeypatch.delenv(CONVERTER_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    work = _fake_converter(tmp_path / "work" / ".venv-imx500" / "bin" / "imxconv-pt")
    monkeypatch.chdir(tmp_path / "work")
    assert converter_dirs()[0] == tmp_path / "work"
    assert REPO in converter_dirs()  # an editable install still finds <repo>/.venv-imx500
    assert find_converter() == work
    repo = _fake_converter(tmp_path / "repo" / ".venv-imx500" / "bin" / "imxconv-pt")
    assert find_converter(None, search_dirs=[tmp_path / "elsewhere", tmp_path / "repo"]) == repo


def test_converter_env_var_comes_after_the_config_key(tmp_path, monkeypatch):
    env = _fake_converter(tmp_path / "env" / "imxconv-pt")
    key = _fake_converter(tmp_path / "key" / "imxconv-pt")
    monkeypatch.setenv(CONVERTER_ENV, str(env))
    assert find_converter(None, search_dirs=[]) == env
    assert find_converter(str(key), search_dirs=[]) == key
    monkeypatch.setenv(CONVERTER_ENV, str(tmp_path / "gone" / "imxconv-pt"))
    with pytest.raises(ExportError) as err:
        find_converter(None, search_dirs=[])
    assert f"{CONVERTER_ENV}={tmp_path / 'gone' / 'imxconv-pt'}" in str(err.value)
    assert INSTALL_COMMAND in str(err.value)


@pytest.fixture(scope="module")
def one_input_checkpoint(tmp_path_factory, cache_dir) -> str:
    """Two batches of a 64 px one-input TinyTracker: a checkpoint format=imx500 accepts."""
    out = tmp_path_factory.mktemp("one-input-run")
    train_in_process(out, *SMALL_DATA, ONE_INPUT, "data.face_size=64", "trainer.max_epochs=1",
                     "trainer.limit_train_batches=2", "logger=none")
    return read_metrics(out)["checkpoint"]


def test_configured_converter_that_is_missing_is_named(tmp_path, one_input_checkpoint):
    ckpt = one_input_checkpoint
    bad = tmp_path / "nowhere" / "imxconv-pt"
    with pytest.raises(ExportError) as err:
        _export_in_process(tmp_path, f"ckpt_path={ckpt}", "format=imx500",
                           f"imx500.converter={bad}")
    assert f"imx500.converter={bad}" in str(err.value)
    assert INSTALL_COMMAND in str(err.value)
    assert not (tmp_path / "export.json").exists()


def test_qat_checkpoint_gives_its_float_weights():
    from brevitas.nn import QuantConv2d, QuantLinear

    from tinytracker.quant.brevitas import BrevitasNet
    from tinytracker.quant.float_weights import float_net_of

    config = {"_target_": "tinytracker.models.TinyTracker", "grid_embedding": True}
    torch.manual_seed(0)
    quantized = BrevitasNet(config).eval()
    with torch.no_grad():  # weights as QAT would leave them: moved away from the float init
        for m in quantized.modules():
            if isinstance(m, (QuantConv2d, QuantLinear)):
                m.weight.add_(0.01 * torch.randn_like(m.weight))
    net = float_net_of(quantized, {"_target_": "tinytracker.quant.brevitas.BrevitasNet",
                                   "float_net": config})
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())  # folded, as in QAT
    float_w = [m.weight for m in net.modules() if type(m) in (nn.Conv2d, nn.Linear)]
    quant_w = [m.weight for m in quantized.modules()
               if isinstance(m, (QuantConv2d, QuantLinear))]
    assert len(float_w) == len(quant_w) > 20
    assert all(torch.equal(f, q) for f, q in zip(float_w, quant_w, strict=True))
    plain = {"_target_": "tinytracker.models.TinyTracker"}
    assert float_net_of(net, plain) is net  # a float checkpoint's net is used as it is


def test_qat_late_checkpoint_gives_its_float_weights_and_float_head():
    from tinytracker.quant.brevitas import BrevitasNet
    from tinytracker.quant.float_weights import float_net_of

    config = {"_target_": "tinytracker.models.TinyTracker", "position": "late",
              "grid_embedding": False}
    torch.manual_seed(0)
    quantized = BrevitasNet(config).eval()
    with torch.no_grad():  # a head as training leaves it, not as initialised
        for param in quantized.host_head().parameters():
            param.add_(0.1 * torch.randn_like(param))
    net = float_net_of(quantized, {"_target_": "tinytracker.quant.brevitas.BrevitasNet",
                                   "float_net": config})
    for got, want in zip(net.host_head().state_dict().values(),
                         quantized.host_head().state_dict().values(), strict=True):
        assert torch.equal(got, want)
    face, box = torch.rand(2, 3, 112, 112) * 2 - 1, torch.rand(2, 4)
    with torch.no_grad():  # float weights + float head: the QAT model up to its 8-bit rounding
        assert torch.allclose(net(face, box), quantized(face, box), atol=0.5)


def test_traceable_wrapper_computes_the_float_net():
    from tinytracker.models import TinyTracker, TinyTrackerS
    from tinytracker.quant.mct import traceable

    torch.manual_seed(0)
    for net, keys in ((TinyTracker(grid_embedding=True), ("face", "grid_embedding")),
                      (TinyTracker(grid_embedding=False, output_activation="tanh"), ("face",)),
                      (TinyTrackerS(baked_grid_embedding=True, padding="tf_same"), ("face",))):
        net.eval()
        wrapped = traceable(net)
        assert wrapped.input_keys == keys
        inputs = [torch.randn(2, *net.input_shapes[k]) for k in keys]
        with torch.no_grad():
            assert torch.allclose(wrapped(*inputs), net(*inputs), atol=1e-5)
        torch.fx.symbolic_trace(wrapped)  # what MCT's model reader does
    # the sensor part of each one-input position choice: what format=imx500 quantizes
    for net, keys, width in ((TinyTracker(position="late"), ("face",), 128),
                             (TinyTracker(position="frame"), ("frame",), 2),
                             (TinyTrackerS(position="late", grid_embedding=False), ("face",), 64),
                             (TinyTrackerS(position="frame", grid_embedding=False), ("frame",), 2)):
        net.eval()
        wrapped = traceable(net)
        assert wrapped.input_keys == keys == net.sensor_input_keys
        x = torch.randn(2, *net.input_shapes[keys[0]])
        with torch.no_grad():
            out = wrapped(x)
            assert out.shape == (2, width)
            assert torch.allclose(out, net.sensor_net()(x), atol=1e-5)
        torch.fx.symbolic_trace(wrapped)
    with pytest.raises(ValueError, match="TinyTracker and TinyTrackerS can"):
        traceable(nn.Linear(2, 2))


def test_camera_frames_are_the_test_splits_frames_and_the_roi_sees_its_face(cache_dir):
    """The emulation's full raw frames are the loader's test frames in its order, and the
    camera path (face ROI -> ISP scale -> int8 codes) sees the face crop the model was tested
    on, up to JPEG re-encoding and integer codes."""
    from tinytracker.assemble import spec_data
    from tinytracker.deploy import camera
    from tinytracker.deploy.manifest import InputSpec, Manifest, OutputSpec, RoiSpec
    from tinytracker.export.emulation import camera_frames

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, "ckpt_path=unused"])
    record = {"face_size": 112, "grey": False, "mean": 0.5, "std": 0.5,
              "grid_embedding": False}
    datamodule, loader = spec_data(cfg.data, record, ("face",), "test")
    manifest = Manifest(InputSpec("RGB", 112, 112, scale=1 / 128), RoiSpec(),
                        OutputSpec("gaze_cm", 2, 1 / 32), None, "a" * 64)
    faces = torch.cat([b["face"] for b in loader]).numpy()
    labels = torch.cat([b["gaze_cm"] for b in loader]).numpy()
    frames = list(camera_frames(datamodule, "test"))
    assert len(frames) == len(faces) > 0
    np.testing.assert_allclose([f.gaze_cm for f in frames], labels, atol=1e-5)
    seen: list[np.ndarray] = []

    def recording_graph(x: np.ndarray) -> np.ndarray:  # what the sensor graph is given
        seen.append(x[0])
        return np.zeros((len(x), 2), dtype=np.float32)

    for item in frames:
        camera.emulate_frame(item.frame, item.face_box, manifest, None, recording_graph)
    diffs = [np.abs(x - face).mean() for x, face in zip(seen, faces, strict=True)]
    # same face: a few grey levels of JPEG noise (1/128 per level); another frame's face or
    # a shifted crop differs by far more
    assert max(diffs) < 0.06, max(diffs)
    other = np.abs(faces[0] - faces[1:]).mean(axis=(1, 2, 3))
    assert other.min() > 3 * max(diffs), (other.min(), max(diffs))


# ------------------------------------------------------------- mixed precision and GPTQ
@pytest.mark.slow
@pytest.mark.timeout(900)
@needs_converter
def test_mixed_precision_export_uses_less_chip_memory_than_8_bits(tmp_path, late_run,
                                                                  late_export):
    """imx500.weights_memory_fraction: MCT moves some layers below 8 bits, the real converter
    takes the mixed-precision graph and reports less memory than for the 8-bit export of the
    same checkpoint, and the emulated camera still runs (4/2-bit weights in ONNX Runtime)."""
    from tinytracker.report.imx500_front import main as front_main

    ckpt = read_metrics(late_run)["checkpoint"]
    out = tmp_path / "mp" / "export"
    run_module("tinytracker.export", f"ckpt_path={ckpt}", "format=imx500", f"out_dir={out}",
               "imx500.calibration_images=32", "imx500.weights_memory_fraction=0.5",
               *EVAL_DATA, env=ONE_THREAD)
    mixed = json.loads((out / "export.json").read_text())
    eight = json.loads((late_export / "export.json").read_text())

    bits = mixed["imx500/weight_bits"]
    assert set(bits) == set(eight["imx500/weight_bits"]) and len(bits) > 20
    assert set(eight["imx500/weight_bits"].values()) == {8}
    assert min(bits.values()) < 8 and set(bits.values()) <= {2, 4, 8}
    by_bits = mixed["imx500/weights_by_bits"]
    assert sum(by_bits.values()) == sum(eight["imx500/weights_by_bits"].values())
    # MCT's own accounting: the budget is half of the 8-bit weights memory, and it is met
    eight_bytes = mixed["imx500/mct_weights_memory_8bit_bytes"]
    assert eight_bytes == eight["imx500/mct_weights_memory_bytes"] == sum(by_bits.values())
    assert mixed["imx500/weights_memory_budget_bytes"] == round(0.5 * eight_bytes)
    assert mixed["imx500/mct_weights_memory_bytes"] <= mixed["imx500/weights_memory_budget_bytes"]
    assert eight["imx500/weights_memory_budget_bytes"] is None
    assert mixed["imx500/gptq"] is False and mixed["imx500/gptq_epochs"] == 0

    # the converter's memory report (read here, not through the export's parser)
    report = json.loads(Path(mixed["imx500/memory_report"]).read_text())["Memory Report"]
    assert report["Memory Usage"] == f"{mixed['imx500/memory_usage_bytes']}B"
    assert mixed["imx500/fit_in_chip"] is True
    saved = eight["imx500/model_memory_bytes"] - mixed["imx500/model_memory_bytes"]
    assert mixed["imx500/memory_usage_bytes"] < eight["imx500/memory_usage_bytes"]
    # about what MCT took off the weights (the converter adds layout, not bits)
    taken = eight_bytes - mixed["imx500/mct_weights_memory_bytes"]
    assert 0.5 * taken <= saved <= 1.5 * taken, (saved, taken)

    _check_emulated_camera(mixed)
    assert abs(mixed["imx500/emulated_test_error_cm"]
               - eight["imx500/emulated_test_error_cm"]) <= PAPER_QUANT_BUDGET_CM

    # the front over the two exports: the 8-bit one is the reference, both are on it
    (tmp_path / "mp" / "8bit").mkdir()
    (tmp_path / "mp" / "8bit" / "export.json").write_text(json.dumps(eight))
    front_main([f"exports={tmp_path / 'mp'}", f"out_dir={tmp_path / 'front'}"])
    front = json.loads((tmp_path / "front" / "front.json").read_text())
    names = [p["name"] for p in front["points"]]
    assert sorted(names) == sorted(["8-bit", f"50% ({round(0.5 * eight_bytes) / 1024:.0f} KB)"])
    assert front["points"][front["reference"]]["name"] == "8-bit"
    assert (tmp_path / "front" / "front.png").stat().st_size > 10_000


@pytest.mark.parametrize(("overrides", "named"), [
    (["imx500.weights_memory_kb=300", "imx500.weights_memory_fraction=0.5"],
     "imx500.weights_memory_kb=300 and imx500.weights_memory_fraction=0.5 both"),
    (["imx500.weights_memory_kb=0"], "imx500.weights_memory_kb must be > 0"),
    (["imx500.weights_memory_kb=-5"], "imx500.weights_memory_kb must be > 0"),
    (["imx500.weights_memory_fraction=0"], "imx500.weights_memory_fraction must be in (0, 1]"),
    (["imx500.weights_memory_fraction=1.5"], "imx500.weights_memory_fraction must be in (0, 1]"),
    (["imx500.gptq=true", "imx500.gptq_epochs=0"], "imx500.gptq_epochs must be >= 1"),
])
def test_mixed_precision_settings_are_checked_naming_the_key(overrides, named):
    from tinytracker.export.imx500 import check_settings

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=["ckpt_path=unused", *overrides])
    with pytest.raises(ExportError) as err:
        check_settings(cfg.imx500)
    assert named in str(err.value)


def test_default_settings_are_8_bits_without_gptq():
    from tinytracker.export.imx500 import budget_bytes, check_settings
    from tinytracker.quant.mct import WeightsMemory

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=["ckpt_path=unused"])
    check_settings(cfg.imx500)
    assert cfg.imx500.gptq is False
    memory = WeightsMemory(eight_bit_bytes=400_000, min_bytes=100_000)
    assert budget_bytes(cfg.imx500, memory) is None
    cfg.imx500.weights_memory_fraction = 0.5
    assert budget_bytes(cfg.imx500, memory) == 200_000
    cfg.imx500.weights_memory_fraction = 1.0  # the 8-bit net: no search
    assert budget_bytes(cfg.imx500, memory) is None
    cfg.imx500.weights_memory_fraction = None
    cfg.imx500.weights_memory_kb = 150  # 1 KB = 1024 B, as the converter's memory report
    assert budget_bytes(cfg.imx500, memory) == 150 * 1024


@needs_converter
def test_budget_below_the_lowest_bit_widths_is_refused_before_quantizing(tmp_path,
                                                                         one_input_checkpoint):
    with pytest.raises(ExportError) as err:
        _export_in_process(tmp_path, f"ckpt_path={one_input_checkpoint}", "format=imx500",
                           "imx500.calibration_images=16", "imx500.weights_memory_kb=1")
    message = str(err.value)
    assert "imx500.weights_memory_kb=1 asks MCT for 1,024 B of weights" in message
    assert "needs at least" in message and "every layer at its lowest bit width" in message
    assert not (tmp_path / "export.json").exists() and not list(tmp_path.rglob("*.onnx"))


class _TwoConvs(nn.Module):
    """A conv (3*8*9 = 216 weights) and a linear (8*2 = 16 weights) layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 2)

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(face)).mean((2, 3)))


def test_mct_weights_memory_and_its_reason_for_an_unreachable_budget():
    """MCT's own figures on a net whose weights are known: 232 weights, 232 B at 8 bits and a
    quarter at 2; a budget between them is met, one below the minimum fails with MCT's
    reason (the export turns it into a message naming the key)."""
    from tinytracker.quant.mct import (
        BudgetUnreachable,
        MctOptions,
        quantize_for_imx500,
        weight_bits,
        weights_by_bits,
        weights_memory,
    )

    torch.manual_seed(0)
    net = _TwoConvs().eval()
    calibration = [(torch.rand(8, 3, 16, 16) * 2 - 1,)]
    memory = weights_memory(net, calibration)
    assert (memory.eight_bit_bytes, memory.min_bytes) == (232, 58)
    quantized = quantize_for_imx500(net, calibration, options=MctOptions(weights_memory_bytes=130))
    bits = weight_bits(quantized)
    assert len(bits) == 2 and min(bits.values()) < 8
    assert sum(b * n for b, n in weights_by_bits(quantized).items()) / 8 <= 130
    with pytest.raises(BudgetUnreachable, match="cannot be quantized to meet"):
        quantize_for_imx500(net, calibration, options=MctOptions(weights_memory_bytes=50))


def test_gptq_runs_and_its_onnx_runs_in_onnx_runtime(tmp_path):
    from tinytracker.export.emulation import mct_onnx_session, session_graph
    from tinytracker.quant.mct import MctOptions, export_mct_onnx, quantize_for_imx500

    torch.manual_seed(0)
    net = _TwoConvs().eval()
    calibration = [(torch.rand(8, 3, 16, 16) * 2 - 1,)]
    plain = quantize_for_imx500(net, calibration)
    tuned = quantize_for_imx500(net, calibration, options=MctOptions(gptq_epochs=3))
    x = calibration[0][0]
    moved = [k for k, v in tuned.state_dict().items()
             if k.endswith(("weight", "bias")) and not torch.equal(v, plain.state_dict()[k])]
    assert moved  # GPTQ changed weights' rounding or biases
    with torch.no_grad():
        graph = session_graph(mct_onnx_session(export_mct_onnx(tuned, tmp_path / "g.onnx", (x,))))
        np.testing.assert_allclose(graph(x.numpy()), tuned(x).numpy(), atol=1e-5)
