"""``python -m tinytracker.calibrate`` end to end on a tiny trained model, the INT8 ONNX path,
``predict calibration=...`` and the capture writer.

The model is a real (tiny) training run; its errors are meaningless, what is checked is that
the protocol, the saved corrections and their application agree with independent
recomputations.
"""

from __future__ import annotations

import json
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
    run_module,
    train_in_process,
)
from tinytracker.assemble import checkpoint_data
from tinytracker.calibrate.__main__ import calibrate
from tinytracker.calibrate.capture import CapturedFrame, pattern_dots, write_capture
from tinytracker.correction.corrections import CalibrationError
from tinytracker.correction.saved import load_calibration
from tinytracker.data.gazecapture import read_recording
from tinytracker.evaluate import predict_split
from tinytracker.models.checkpoint import module_from_checkpoint
from tinytracker.predict.__main__ import main as predict
from tinytracker.predict.screen import custom

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ONE_THREAD = {"OMP_NUM_THREADS": "1"}
EVAL_DATA = [a for a in SMALL_DATA if not a.startswith("data.batch_size")]
CURVE = "curve_points=[1,3,5,9]"


@pytest.fixture(scope="module")
def trained(float_run) -> dict:
    """The session's tiny float run (conftest): 64 px, grid embedding, 4 short epochs, enough
    for its outputs to vary from frame to frame."""
    return float_run


def calibrate_in_process(out_dir: Path, *overrides: str) -> dict:
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=[*EVAL_DATA, f"out_dir={out_dir}",
                                              f"paths.root_dir={REPO}", *overrides])
    return calibrate(cfg, out_dir)


def test_calibrate_command_end_to_end(trained, tmp_path):
    ckpt = trained["checkpoint"]
    run_module("tinytracker.calibrate", f"ckpt_path={ckpt}", "points=3", f"out_dir={tmp_path}",
               *EVAL_DATA, CURVE, env=ONE_THREAD)
    result = json.loads((tmp_path / "calibration.json").read_text())

    # the uncalibrated model is the one the training run tested, on the same frames
    assert result["error_cm_all_frames"] == pytest.approx(trained["test/error_cm"], abs=1e-4)
    n_subjects = len(result["per_subject"])
    assert result["subjects"] == n_subjects >= 1
    assert result["frames_calibration"] == 3 * n_subjects
    assert result["frames_evaluated"] + result["frames_calibration"] == trained["data/test_frames"]
    assert result["improvement_cm"] == pytest.approx(
        result["error_cm_before"] - result["error_cm_after"])

    # recompute one subject independently: evaluate's predictions, numpy least squares
    module = module_from_checkpoint(ckpt)
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=[*EVAL_DATA, f"paths.root_dir={REPO}"])
    _, loader = checkpoint_data(cfg.data, module, "test")
    pred = predict_split(module, loader)
    rec, subject = next(iter(result["per_subject"].items()))
    mine = pred["rec"] == int(rec)
    cal = np.array([np.flatnonzero(mine & (pred["frame"] == f))[0]
                    for f in subject["calibration_frames"]])
    rest = mine & ~np.isin(np.arange(len(mine)), cal)
    assert len(cal) == 3 and rest.sum() == subject["frames_evaluated"]
    np.testing.assert_allclose(pred["target"][cal], subject["calibration_targets_cm"], atol=1e-4)
    # affine.prior_points=10 (default): least squares with 2 extra rows sqrt(lam) (A - I)
    g, t = pred["pred"][cal].astype(float), pred["target"][cal].astype(float)
    gc, tc = g - g.mean(0), t - t.mean(0)
    lam = 10.0 * (gc**2).sum() / (2 * 3)
    design = np.r_[gc, np.sqrt(lam) * np.eye(2)]
    matrix = np.linalg.lstsq(design, np.r_[tc, np.sqrt(lam) * np.eye(2)], rcond=None)[0].T
    bias = t.mean(0) - matrix @ g.mean(0)
    corrected = pred["pred"][rest] @ matrix.T + bias
    after = np.linalg.norm(corrected - pred["target"][rest], axis=1).mean()
    before = np.linalg.norm(pred["pred"][rest] - pred["target"][rest], axis=1).mean()
    assert subject["error_cm_after"] == pytest.approx(after, abs=1e-4)
    assert subject["error_cm_before"] == pytest.approx(before, abs=1e-4)

    # the curve: every kind at every k it can run with; k=3 affine is the run above
    curve = result["curve"]
    assert curve["points"] == [1, 3, 5, 9]
    assert set(curve["error_cm_after"]) == {"offset", "affine", "ridge", "svr"}
    assert curve["error_cm_after"]["affine"][0] is None and "affine@1" in curve["notes"]
    assert curve["error_cm_after"]["affine"][1] == pytest.approx(result["error_cm_after"])
    assert all(v is not None for v in curve["error_cm_after"]["ridge"][1:])
    assert (tmp_path / "calibration_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    saved = load_calibration(tmp_path / "corrections.json")
    assert set(saved.subjects) == set(result["per_subject"]) and saved.matches(ckpt)
    np.testing.assert_allclose(saved.subjects[rec].params["matrix"], matrix, atol=1e-4)
    np.testing.assert_allclose(saved.subjects[rec].params["bias_cm"], bias, atol=1e-4)


def test_points_below_the_kinds_minimum_fail_with_a_clear_message(trained, tmp_path):
    """In-process (the command's own ``calibrate``; its ``main`` exits with the message)."""
    with pytest.raises(CalibrationError,
                       match="points=2 is too few for kind=affine: it needs points >= 3"):
        calibrate_in_process(tmp_path, f"ckpt_path={trained['checkpoint']}", "points=2",
                             "kind=affine")
    assert not (tmp_path / "calibration.json").exists()


def test_predict_applies_a_saved_calibration(trained, tmp_path):
    skimage_data = import_or_missing("skimage.data", SCIKIT_IMAGE)
    ckpt = trained["checkpoint"]
    calibrate_in_process(tmp_path / "cal", f"ckpt_path={ckpt}", "points=5",
                         "curve_points=[5]", "curve_kinds=[affine]")
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    predict([f"ckpt_path={ckpt}", f"input={photo}", f"out_dir={tmp_path / 'raw'}",
             "annotate=false"])
    saved = load_calibration(tmp_path / "cal" / "corrections.json")
    subject = sorted(saved.subjects)[0]
    fixed = predict([f"ckpt_path={ckpt}", f"input={photo}", f"out_dir={tmp_path / 'fixed'}",
                     "annotate=false", f"calibration={tmp_path / 'cal' / 'corrections.json'}",
                     f"calibration_subject={int(subject)}"])
    assert fixed["calibration"]["subject"] == subject
    assert fixed["calibration"]["kind"] == "affine"
    before = json.loads((tmp_path / "raw" / "predictions.json").read_text())["frames"][0]
    after = json.loads((tmp_path / "fixed" / "predictions.json").read_text())["frames"][0]
    params = saved.subjects[subject].params
    expected = params["matrix"] @ [before["x_cm"], before["y_cm"]] + params["bias_cm"]
    assert [after["x_cm"], after["y_cm"]] == pytest.approx(expected.tolist(), abs=1e-9)


@pytest.mark.slow
def test_int8_onnx_calibration_matches_the_quantized_pytorch_model(trained, tmp_path):
    """PTQ of the tiny model, exported with its features; ONNX Runtime and PyTorch calibrate
    alike (po2 scales: ONNX Runtime reproduces the quantized outputs exactly)."""
    ptq = tmp_path / "ptq"
    train_in_process(ptq, "+experiment=qat", *SMALL_DATA,
                     f"quant.float_ckpt={trained['checkpoint']}", "quant.mode=ptq",
                     "quant.calibration_batches=2", "logger=none", "data.face_size=64",
                     "model.position=input")  # the float run's design (conftest float_run)
    int8_ckpt = read_metrics(ptq)["checkpoint"]
    run_module("tinytracker.export", f"ckpt_path={int8_ckpt}", "format=onnx", "features=true",
               f"out_dir={tmp_path / 'export'}", *EVAL_DATA, env=ONE_THREAD)
    onnx_path = tmp_path / "export" / "model.onnx"
    result = calibrate_in_process(tmp_path / "cal", f"ckpt_path={int8_ckpt}",
                                  f"onnx_path={onnx_path}", "kind=ridge", "points=5", CURVE)
    assert result["model"]["quantized"] is True and result["onnx"]["model"]["quantized"] is True
    assert result["onnx"]["model"]["features"] is True
    assert result["comparison"]["improvement_diff_cm"] < 1e-4
    # the same curve, including where a kind could not run (e.g. collinear INT8 outputs)
    onnx_curve, torch_curve = result["onnx"]["curve"], result["curve"]
    assert onnx_curve["notes"] == torch_curve["notes"]
    for kind in ("offset", "affine", "ridge", "svr"):
        for a, b in zip(onnx_curve["error_cm_after"][kind], torch_curve["error_cm_after"][kind],
                        strict=True):
            assert (a is None and b is None) or a == pytest.approx(b, abs=1e-4), kind
    assert (tmp_path / "cal" / "corrections_onnx.json").is_file()

    # the float model against its INT8 export: both numbers side by side, the same frames
    # (offset: this barely trained model's INT8 outputs can lie on a line, where affine fails)
    result = calibrate_in_process(tmp_path / "cal2", f"ckpt_path={trained['checkpoint']}",
                                  f"onnx_path={onnx_path}", "points=5", "kind=offset",
                                  "curve_points=[5]")
    assert result["model"]["quantized"] is False
    assert result["frames_evaluated"] == result["onnx"]["frames_evaluated"]
    assert set(result["comparison"]) >= {"improvement_cm_pytorch", "improvement_cm_onnx",
                                         "improvement_diff_cm"}


def astronaut_frames(screen, points: int) -> list[CapturedFrame]:
    """Camera frames of a real face (two per dot, shifted a little) and one without a face."""
    skimage_data = import_or_missing("skimage.data", SCIKIT_IMAGE)
    face = skimage_data.astronaut()
    dots = pattern_dots(points, screen, 1920, 1080)
    frames = []
    for dot in dots:
        for shift in (0, 6):
            image = np.roll(face, shift * (dot.index + 1), axis=1)
            frames.append(CapturedFrame(image, dot, 1.0 + 0.1 * shift))
    frames.append(CapturedFrame(np.full_like(face, 90), dots[0], 1.2))
    return frames


def test_capture_writes_a_raw_recording_that_calibrates_and_predicts(trained, tmp_path):
    if not hasattr(cv2, "CascadeClassifier"):
        missing_install("this OpenCV has no Haar cascades: install opencv-python-headless<5")
    # a 34.5 x 19.4 cm laptop screen, camera centred 1 cm above it
    screen = custom(34.5, 19.4, 17.25, 1.0, 1920, 1080)
    frames = astronaut_frames(screen, 5)
    rec_dir = write_capture(frames, tmp_path / "set", screen, device_name="laptop")
    assert rec_dir.name == "00001"
    rec = read_recording(rec_dir)
    assert len(rec) == 11 and rec.dataset == "test" and rec.device_name == "laptop"
    assert rec.valid.tolist() == [True] * 10 + [False]  # the blank frame: no face
    # predict's Apple-like box and its face grid for camera=gazecapture (512 px square frames)
    from tinytracker.data.face_detection import HaarDetector
    from tinytracker.data.geometry import GAZECAPTURE_FOV_DEG, camera_face_grid

    box = HaarDetector()(frames[0].image).face
    assert tuple(rec.face.xywh[0]) == box
    assert tuple(rec.face_grid.xywh[0]) == camera_face_grid(box, (512, 512), GAZECAPTURE_FOV_DEG)
    # the labels: dot 0 is the screen's centre, 9.7 cm + 1 cm below the camera
    np.testing.assert_allclose(rec.dot_cm[0], [0.0, -10.7], atol=1e-4)
    np.testing.assert_allclose(rec.dot_cm[2], [0.1 * 34.5 - 17.25, -(0.1 * 19.4 + 1.0)],
                               atol=1e-4)
    assert json.loads((rec_dir / "dotInfo.json").read_text())["XPts"][2] == pytest.approx(192.0)
    # a second session gets a new recording; the first is untouched
    again = write_capture(frames[:3], tmp_path / "set", screen)
    assert again.name == "00002" and len(read_recording(rec_dir)) == 11

    result = calibrate_in_process(tmp_path / "cal", f"ckpt_path={trained['checkpoint']}",
                                  f"calibration_set={tmp_path / 'set'}", "kind=offset")
    assert result["subjects"] == 2
    first = result["per_subject"]["00001"]
    assert first["frames"] == 10 and first["dots"] == 5
    assert first["error_cm_after_leave_one_dot_out"] is not None
    assert first["error_cm_after_in_sample"] <= first["error_cm_before"] + 1e-9

    photo = tmp_path / "me.png"
    cv2.imwrite(str(photo), cv2.cvtColor(frames[0].image, cv2.COLOR_RGB2BGR))
    summary = predict([f"ckpt_path={trained['checkpoint']}", f"input={photo}",
                       f"out_dir={tmp_path / 'pred'}", "annotate=false",
                       f"calibration={tmp_path / 'cal' / 'corrections.json'}",
                       "calibration_subject=1"])
    assert summary["frames_with_gaze"] == 1 and summary["calibration"]["kind"] == "offset"


def test_feature_calibration_for_another_model_is_refused(trained, tmp_path, capsys):
    ckpt = trained["checkpoint"]
    calibrate_in_process(tmp_path / "cal", f"ckpt_path={ckpt}", "kind=ridge", "points=3",
                         "curve_points=[3]", "curve_kinds=[ridge]")
    corrections = tmp_path / "cal" / "corrections.json"
    subject = sorted(load_calibration(corrections).subjects)[0]
    other = tmp_path / "other.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["state_dict"]["net.head.bias"] += 1.0
    torch.save(state, other)
    photo = tmp_path / "blank.png"
    cv2.imwrite(str(photo), np.full((64, 64, 3), 90, np.uint8))
    with pytest.raises(SystemExit):
        predict([f"ckpt_path={other}", f"input={photo}", f"out_dir={tmp_path / 'p'}",
                 f"calibration={corrections}", f"calibration_subject={subject}"])
    err = capsys.readouterr().err
    assert "was fitted on" in err and "only fits the model it was fitted on" in err


def test_float_onnx_with_features_calibrates_like_its_checkpoint(trained, tmp_path):
    """An ONNX file alone (onnx_path, inputs from its metadata), features included."""
    from tinytracker.export.onnx import export_onnx

    ckpt = trained["checkpoint"]
    module = module_from_checkpoint(ckpt)
    path = export_onnx(module.net, tmp_path / "model.onnx", dict(module.hparams["input_spec"]),
                       features=True)
    args = ("kind=ridge", "points=3", "curve_points=[3,5]", "curve_kinds=[affine,ridge]")
    by_onnx = calibrate_in_process(tmp_path / "onnx", f"onnx_path={path}", *args)
    by_ckpt = calibrate_in_process(tmp_path / "ckpt", f"ckpt_path={ckpt}", *args)
    assert by_onnx["model"]["type"] == "onnx" and by_onnx["model"]["features"] is True
    assert "onnx" not in by_onnx  # one model: its numbers are the top-level ones
    assert by_onnx["error_cm_after"] == pytest.approx(by_ckpt["error_cm_after"], abs=1e-4)
    assert by_onnx["per_subject"].keys() == by_ckpt["per_subject"].keys()
    for kind in ("affine", "ridge"):
        assert by_onnx["curve"]["error_cm_after"][kind] == pytest.approx(
            by_ckpt["curve"]["error_cm_after"][kind], abs=1e-4)
    assert load_calibration(tmp_path / "onnx" / "corrections.json").model["type"] == "onnx"


def test_fit_option_defaults_are_the_configs():
    """FitOptions() is what tinytracker/conf/calibrate.yaml configures: Python and YAML agree."""
    from tinytracker.calibrate.__main__ import validate
    from tinytracker.correction.corrections import FitOptions

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=["ckpt_path=model.ckpt"])
    assert validate(cfg) == FitOptions()
