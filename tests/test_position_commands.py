"""``predict``, ``calibrate`` and ``format=imx500`` on the one-input ``model.position`` choices
that change what a command must feed: ``late`` (the face box joins in the host head) and
``frame`` (the whole frame, no face needed).

Two tiny real training runs (32 px, TinyTracker at width 0.25, 4 short epochs on SMALL_DATA),
shared by every test here. Their predictions are meaningless; what is checked is that each
command feeds the model what the camera would: for ``late`` the normalised ROI of the face
box, for ``frame`` the whole frame scaled as the IMX500's ISP scales it. The real-converter
export of the ``frame`` run is in the slow tier.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module

from tests.conftest import (
    REPO,
    SCIKIT_IMAGE,
    SMALL_DATA,
    import_or_missing,
    missing_install,
    read_metrics,
    train_in_process,
)
from tinytracker.calibrate.__main__ import calibrate
from tinytracker.data.transforms import to_tensor_layout
from tinytracker.deploy.roi import RoiRule, emulate_isp, face_roi, full_frame_roi, normalised_box
from tinytracker.export.onnx import export_onnx
from tinytracker.models.checkpoint import module_from_checkpoint
from tinytracker.predict.__main__ import main as predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

skimage_data = import_or_missing("skimage.data", SCIKIT_IMAGE)
if not hasattr(cv2, "CascadeClassifier"):
    missing_install(f"OpenCV {cv2.__version__} has no Haar cascades: install "
                    "opencv-python-headless<5")

EVAL_DATA = [a for a in SMALL_DATA if not a.startswith("data.batch_size")]
SIZE = 32
TINY = [*SMALL_DATA, f"data.face_size={SIZE}", "model.net.width_mult=0.25"]
PAPER_QUANT_BUDGET_CM = 0.16  # TinyTracker paper: INT8 within 0.16 cm of the float model
CSV_CM = 1e-4  # predictions.csv writes 4 decimals


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cache_dir) -> dict[str, dict]:
    """``metrics.json`` of a tiny ``late`` and a tiny ``frame`` run. Four epochs, because after
    two the batch-norm statistics have not settled and every frame gives the same output."""
    out = {}
    for position in ("late", "frame"):
        folder = tmp_path_factory.mktemp(f"{position}-run")
        train_in_process(folder, *TINY, f"model.position={position}", "trainer.max_epochs=4",
                         "logger=none")
        out[position] = read_metrics(folder)
    return out


@pytest.fixture(scope="module")
def onnx_files(runs, tmp_path_factory) -> dict[str, Path]:
    """Each run's float ONNX export with its features (as ``export format=onnx features=true``)."""
    folder = tmp_path_factory.mktemp("position-onnx")
    files = {}
    for position, metrics in runs.items():
        module = module_from_checkpoint(metrics["checkpoint"])
        files[position] = export_onnx(module.net, folder / f"{position}.onnx",
                                      dict(module.hparams["input_spec"]), features=True)
    return files


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """A folder: a real face (the astronaut, 512x512) and a photo without one (coffee)."""
    folder = tmp_path_factory.mktemp("photos")
    for name, image in (("a_astronaut.png", skimage_data.astronaut()),
                        ("b_coffee.png", skimage_data.coffee())):
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def _rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _rows(folder: Path) -> list[dict[str, str]]:
    with open(folder / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _gaze(row: dict[str, str]) -> np.ndarray:
    return np.array([float(row["x_cm"]), float(row["y_cm"])])


def _calibrate(out_dir: Path, *overrides: str) -> dict:
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=[*EVAL_DATA, f"out_dir={out_dir}",
                                              f"paths.root_dir={REPO}", *overrides])
    return calibrate(cfg, out_dir)


# ----------------------------------------------------------------------------- predict
def test_predict_late_feeds_the_head_the_cameras_roi_box(runs, onnx_files, photos, tmp_path):
    ckpt = runs["late"]["checkpoint"]
    summary = predict([f"ckpt_path={ckpt}", f"input={photos}", f"out_dir={tmp_path / 'ckpt'}",
                       "annotate=false"])
    assert summary["model_inputs"] == ["face", "face_box"]
    face, no_face = _rows(tmp_path / "ckpt")
    assert face["face_found"] == "true" and np.isfinite(_gaze(face)).all()
    # no face, no ROI: the late model cannot run (as on the camera, which keeps the last ROI)
    assert no_face["face_found"] == "false" and no_face["x_cm"] == ""
    assert summary["frames_with_gaze"] == 1

    # the gaze the checkpoint gives for the face crop and the box the camera's ROI makes of
    # the detected face (deploy.roi: square training crop, clipped, normalised to the frame)
    image = _rgb(photos / face["source"])
    box = tuple(int(face[f"face_{k}"]) for k in "xywh")
    roi = face_roi(box, RoiRule(), (image.shape[1], image.shape[0]))
    roi_box = normalised_box(roi)
    # a Haar box is square and this one lies inside the frame: the ROI is the training crop
    x, y, w, h = roi.rect
    assert (w, h) == (box[2] + 1, box[3] + 1) and not roi.clipped
    crop = cv2.resize(image[y:y + h, x:x + w], (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    module = module_from_checkpoint(ckpt).eval()
    with torch.no_grad():
        expected = module.net(torch.from_numpy(to_tensor_layout(crop, False, 0.5, 0.5))[None],
                              torch.from_numpy(roi_box)[None])[0].numpy()
        moved = module.net(torch.from_numpy(to_tensor_layout(crop, False, 0.5, 0.5))[None],
                           torch.tensor([[0.0, 0.0, 0.2, 0.2]]))[0].numpy()
    np.testing.assert_allclose(_gaze(face), expected, atol=CSV_CM)
    assert np.abs(moved - expected).max() > 10 * CSV_CM  # the box reaches the gaze

    # the ONNX export takes the same two fields and gives the same gaze
    by_onnx = predict([f"ckpt_path={onnx_files['late']}", f"input={photos}",
                       f"out_dir={tmp_path / 'onnx'}", "annotate=false"])
    assert by_onnx["model_inputs"] == ["face", "face_box"]
    np.testing.assert_allclose(_gaze(_rows(tmp_path / "onnx")[0]), _gaze(face), atol=2e-4)


def test_predict_frame_runs_on_the_isp_scaled_frame_with_or_without_a_face(runs, onnx_files,
                                                                           photos, tmp_path):
    ckpt = runs["frame"]["checkpoint"]
    summary = predict([f"ckpt_path={ckpt}", f"input={photos}", f"out_dir={tmp_path / 'ckpt'}"])
    assert summary["model_inputs"] == ["frame"]
    rows = _rows(tmp_path / "ckpt")
    assert [r["face_found"] for r in rows] == ["true", "false"]
    assert summary["frames_with_gaze"] == 2  # the camera runs it on every frame
    assert rows[1]["note"] == "no face found (this model takes the whole frame)"
    assert len(summary["annotated"]) == 2

    # the input is the whole frame as the emulated ISP scales the full-frame ROI
    module = module_from_checkpoint(ckpt).eval()
    for row in rows:
        image = _rgb(photos / row["source"])
        isp = emulate_isp(image, full_frame_roi((image.shape[1], image.shape[0])), (SIZE, SIZE))
        frame = (isp.astype(np.float32) / 255.0 - 0.5) / 0.5
        with torch.no_grad():
            expected = module.net(torch.from_numpy(frame)[None])[0].numpy()
        np.testing.assert_allclose(_gaze(row), expected, atol=CSV_CM, err_msg=row["source"])

    by_onnx = predict([f"ckpt_path={onnx_files['frame']}", f"input={photos}",
                       f"out_dir={tmp_path / 'onnx'}", "annotate=false"])
    assert by_onnx["frames_with_gaze"] == 2
    for a, b in zip(_rows(tmp_path / "onnx"), rows, strict=True):
        np.testing.assert_allclose(_gaze(a), _gaze(b), atol=2e-4)


# ----------------------------------------------------------------------------- calibrate
@pytest.mark.parametrize("position", ["late", "frame"])
def test_calibrate_checkpoint_and_onnx_alike(runs, onnx_files, photos, tmp_path, position):
    """Both files on the same frames (late: with their face boxes), features included; the
    saved correction is applied by predict."""
    metrics = runs[position]
    result = _calibrate(tmp_path / "cal", f"ckpt_path={metrics['checkpoint']}",
                        f"onnx_path={onnx_files[position]}", "kind=ridge", "points=3",
                        "curve_points=[3]", "curve_kinds=[offset,ridge]")
    # the uncalibrated model is the one the training run tested, on the same frames
    assert result["error_cm_all_frames"] == pytest.approx(metrics["test/error_cm"], abs=1e-4)
    assert result["model"]["features"] is True and result["onnx"]["model"]["features"] is True
    assert result["frames_evaluated"] + result["frames_calibration"] == \
        metrics["data/test_frames"]
    assert result["comparison"]["improvement_diff_cm"] < 1e-4
    assert result["error_cm_after"] != pytest.approx(result["error_cm_before"], abs=1e-6)

    corrections = tmp_path / "cal" / "corrections_onnx.json"
    subject = sorted(json.loads(corrections.read_text())["subjects"])[0]
    plain = predict([f"ckpt_path={onnx_files[position]}", f"input={photos}",
                     f"out_dir={tmp_path / 'plain'}", "annotate=false"])
    fixed = predict([f"ckpt_path={onnx_files[position]}", f"input={photos}",
                     f"out_dir={tmp_path / 'fixed'}", "annotate=false",
                     f"calibration={corrections}", f"calibration_subject={subject}"])
    assert fixed["calibration"]["kind"] == "ridge"
    assert fixed["frames_with_gaze"] == plain["frames_with_gaze"] >= 1
    before, after = _rows(tmp_path / "plain")[0], _rows(tmp_path / "fixed")[0]
    assert np.abs(_gaze(after) - _gaze(before)).max() > 10 * CSV_CM


# ----------------------------------------------------------------------------- IMX500
@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.usefixtures("imx500_converter")  # skips saying how to install it; fails in CI
def test_real_converter_packs_the_frame_model_for_the_full_frame_roi(runs, tmp_path):
    """position=frame through MCT and imxconv-pt: one input tensor (the whole frame), the
    gaze itself out, deploy.json asking for the full-frame ROI, and the emulated camera."""
    from tinytracker.checksum import file_sha256
    from tinytracker.deploy import camera
    from tinytracker.deploy.manifest import read_manifest
    from tinytracker.export.__main__ import export
    from tinytracker.export.emulation import mct_onnx_session, session_graph

    ckpt = runs["frame"]["checkpoint"]
    out = tmp_path / "export"
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("export", overrides=[*EVAL_DATA, f"ckpt_path={ckpt}", "format=imx500",
                                           "imx500.calibration_images=32", f"out_dir={out}",
                                           f"paths.output_dir={out}", f"paths.root_dir={REPO}"])
    result = export(cfg, out)
    assert json.loads((out / "export.json").read_text()) == json.loads(json.dumps(result))
    assert result["inputs"] == ["frame"] and result["outputs"] == ["gaze_cm"]
    assert result["imx500/fit_in_chip"] is True and result["imx500/memory_usage_bytes"] > 0

    # the packed dnnParams.xml (what the Pi's imx500-package reads): exactly one input tensor
    with zipfile.ZipFile(result["imx500/packer_zip"]) as zf:
        network = ET.fromstring(zf.read("dnnParams.xml")).find("networks/network")
    shapes = [[int(d.get("size")) for d in t.iter("dimension")]
              for t in network.iter("inputTensor")]
    assert shapes == [[3, SIZE, SIZE]]
    assert [[int(d.get("size")) for d in t.iter("dimension")]
            for t in network.iter("outputTensor")] == [[2]]

    # deploy.json: the whole sensor as ROI, no head, the gaze in cm, this checkpoint
    path = Path(result["imx500/deploy_json"])
    manifest = read_manifest(path)
    assert json.loads(path.read_text()) == asdict(manifest)
    assert camera.load(path) == (manifest, None) and result["imx500/head"] is None
    assert manifest.roi.mode == "full_frame"
    assert (manifest.input.format, manifest.input.width, manifest.input.height) == \
        ("RGB", SIZE, SIZE)
    assert manifest.output.kind == "gaze_cm" and manifest.output.units == "cm"
    assert manifest.ckpt_sha256 == file_sha256(ckpt)
    tensor = network.find("inputTensors/inputTensor")
    assert manifest.input.scale == float(tensor.get("scale"))
    full = camera.roi_for_face(None, (640, 480), None, manifest)  # no face needed
    assert full.as_tuple() == (0, 0, *manifest.roi.sensor_size) and not full.clipped

    # the emulated camera on every test frame, none clipped, within the paper's budget
    assert result["imx500/emulated_test_frames"] == result["test/frames"] == \
        runs["frame"]["data/test_frames"]
    assert result["imx500/emulated_test_rois_clipped"] == 0
    emulated = result["imx500/emulated_test_error_cm"]
    assert abs(emulated - result["test/error_cm_float_weights"]) <= PAPER_QUANT_BUDGET_CM
    assert result["imx500/emulated_minus_float_cm"] == pytest.approx(
        emulated - result["test/error_cm_float_weights"])
    assert result["test/error_cm_checkpoint"] == pytest.approx(runs["frame"]["test/error_cm"],
                                                               abs=1e-4)

    # one frame through the camera's path by hand: a frame without any face still runs
    graph = session_graph(mct_onnx_session(result["onnx_path"]))
    blank = np.full((480, 640, 3), 90, np.uint8)
    gaze, roi = camera.emulate_frame(blank, None, manifest, None, graph)
    assert gaze.shape == (1, 2) and np.isfinite(gaze).all() and roi.rect == (0, 0, 640, 480)
