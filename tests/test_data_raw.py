"""Raw GazeCapture layout: geometry, the synthetic generator, ``prepare`` and bad input.

Everything runs on real files in tmp_path: generated JPEGs and JSONs, a real metadata.mat read
back exactly as the public iTracker loader (CSAILVision/GazeCapture ``ITrackerData.py``) does.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from tests.conftest import REPO, run_module
from tinytracker.data import synthetic as syn
from tinytracker.data.gazecapture import DataFormatError, read_recording
from tinytracker.data.geometry import (
    GAZECAPTURE_FOCAL_PX,
    GAZECAPTURE_FOV_DEG,
    GAZECAPTURE_FRAME_PX,
    camera_face_grid,
    crop_with_padding,
    face_grid_from_rect,
    face_grid_mask,
    grid_embedding,
    grid_frame_box,
)
from tinytracker.data.prepare import prepare
from tinytracker.data.processed import load_index
from tinytracker.data.synthetic import optics, recording, render, subjects

KEYS = ("labelRecNum", "frameIndex", "labelDotXCam", "labelDotYCam", "labelFaceGrid",
        "labelTrain", "labelVal", "labelTest")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """4 subjects x 6 frames in the raw layout (1 train/val/test split each at least)."""
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    syn.generate(out, seed=0, subjects=4, frames_per_subject=6, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def prepared(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "processed"
    prepare(raw, out)
    return out


@pytest.fixture
def raw_copy(raw, tmp_path) -> Path:
    """A private copy to damage (copytree keeps mtimes, like an untouched dataset)."""
    return Path(shutil.copytree(raw, tmp_path / "raw"))


def _valid_rows(rec_dir: Path) -> int:
    return int(read_recording(rec_dir).valid.sum())


def _load_public(path: Path) -> dict:
    return scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)


# ----------------------------------------------------------------------------- geometry
def test_face_grid_from_rect_hand_computed():
    # 480x640 frame -> 25x25 grid: 19.2 px per cell across, 25.6 px down
    assert face_grid_from_rect(480, 640, 96, 128, 192, 256) == (6, 6, 10, 10)
    assert face_grid_from_rect(480, 640, 0, 0, 480, 640) == (1, 1, 25, 25)
    # 100/19.2 = 5.21 -> 5 (+1), 300/25.6 = 11.72 -> 12 (+1), 150/19.2 = 7.81 -> 8
    assert face_grid_from_rect(480, 640, 100, 300, 150, 150) == (6, 13, 8, 6)


def test_face_grid_mask_known_box():
    mask = face_grid_mask((2, 3, 4, 5)).reshape(25, 25)  # rows = y, cols = x
    assert mask.sum() == 4 * 5
    # makeGrid compares the 1-based X/Y against 0-based indices: cells x in [2, 6), y in [3, 8)
    assert mask[3, 2] == 1 and mask[7, 5] == 1
    assert mask[3, 1] == 0 and mask[2, 2] == 0 and mask[8, 2] == 0 and mask[3, 6] == 0


def test_grid_embedding_corners():
    full = grid_embedding((1, 1, 25, 25), 4, 4)
    assert full.shape == (2, 4, 4)
    assert full[0, 0, 0] == -1 and full[0, 0, -1] == 1  # x: left -> right
    assert full[1, 0, 0] == -1 and full[1, -1, 0] == 1  # y: top -> bottom
    part = grid_embedding((6, 6, 10, 10), 3, 3)
    np.testing.assert_allclose(part[0, 0, [0, -1]], [2 * 5 / 25 - 1, 2 * 15 / 25 - 1])
    np.testing.assert_allclose(part[1, [0, -1], 0], [2 * 5 / 25 - 1, 2 * 15 / 25 - 1])


def test_grid_embedding_in_the_authors_convention_is_one_cell_further():
    # pbonazzi/tinytracker src/ITrackerDataTF.py create_grid: x_start = g[0]*2/25 - 1,
    # x_end = (g[0] + g[2])*2/25 - 1, with faceGrid.json's 1-based g
    ours = grid_embedding((6, 7, 10, 12), 3, 3)
    theirs = grid_embedding((6, 7, 10, 12), 3, 3, convention="authors_tf")
    np.testing.assert_allclose(theirs[0, 0], np.linspace(6 * 2 / 25 - 1, 16 * 2 / 25 - 1, 3))
    np.testing.assert_allclose(theirs[1, :, 0], np.linspace(7 * 2 / 25 - 1, 19 * 2 / 25 - 1, 3))
    np.testing.assert_allclose(theirs - ours, 2 / 25, atol=1e-6)
    assert grid_embedding((1, 1, 25, 25), 2, 2, convention="authors_tf").max() == pytest.approx(
        1.08)  # the largest value of the released file's input range (test_import_tflite)
    with pytest.raises(ValueError, match="grid_convention must be one of"):
        grid_embedding((1, 1, 25, 25), 2, 2, convention="tf")


def test_the_gazecapture_camera_keeps_a_480x640_frames_grid_and_scales_others_by_angle():
    box = (100, 300, 150, 150)
    assert camera_face_grid(box, (480, 640), GAZECAPTURE_FOV_DEG) == (6, 13, 8, 6)
    assert camera_face_grid(box, (480, 640), None) == face_grid_from_rect(480, 640, *box)
    # the same view at twice the resolution, and a 3:4 frame at another size
    assert camera_face_grid([2 * v for v in box], (960, 1280), GAZECAPTURE_FOV_DEG) == (
        6, 13, 8, 6)
    # a 16:9 landscape frame: its 720 px height spans the 480 px of a 640x480 GazeCapture
    # frame; its centre is the camera's: a centred box stays centred
    moved, size = grid_frame_box((565, 285, 150, 150), (1280, 720), GAZECAPTURE_FOV_DEG)
    assert size == (640, 480)
    np.testing.assert_allclose(moved, (320 - 50, 240 - 50, 100, 100))
    # a wider lens: the same pixels are a larger angle, so the face is larger in the grid
    wide, _ = grid_frame_box(box, (480, 640), 90.0)
    assert wide[2] == pytest.approx(150 * 600 / 240)
    with pytest.raises(ValueError, match="camera_fov_deg"):
        grid_frame_box(box, (480, 640), 180.0)


def test_the_grid_frame_is_the_generators_camera():
    assert GAZECAPTURE_FRAME_PX == (optics.FRAME_W_PX, optics.FRAME_H_PX)
    assert GAZECAPTURE_FOCAL_PX == syn.SyntheticParams().focal_px


def test_crop_with_padding_at_frame_edge():
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    crop = crop_with_padding(image, (-2.7, 7.9, 5, 4))  # truncated to (-2, 7, 5, 4)
    assert crop.shape == (4, 5, 3)
    assert (crop[:, :2] == 0).all()  # left of the frame
    assert (crop[3] == 0).all()  # below the frame (rows 7, 8, 9 exist, 10 does not)
    np.testing.assert_array_equal(crop[:3, 2:], image[7:10, 0:3])


# ----------------------------------------------------------------------------- generator physics
def test_dot_straight_ahead_of_an_eye_gives_a_centred_iris():
    eye = np.array([1.0, -3.0, 35.0])
    for roll in (0.0, 10.0):
        yaw, pitch = optics.gaze_angles_deg(eye, [1.0, -3.0, 0.0], roll)
        assert abs(yaw) < 1e-9 and abs(pitch) < 1e-9
        dx, dy = optics.iris_offset_cm(yaw, pitch, 4.0, 2.2)
        assert abs(dx) < 1e-9 and abs(dy) < 1e-9


def test_iris_moves_with_the_dot_and_kappa_is_mirrored():
    eye = np.array([1.0, -3.0, 35.0])
    yaw, pitch = optics.gaze_angles_deg(eye, [3.0, -3.0, 0.0])  # dot to the subject's right
    dx, dy = optics.iris_offset_cm(yaw, pitch, 4.0, 2.2)
    assert yaw > 0 and dx > 0 and abs(dy) < 1e-9
    np.testing.assert_allclose(dx, 4.0 * np.sin(np.arctan2(2.0, 35.0)))
    # unmirrored front camera: the subject's right (+X) is the image's left (smaller u)
    u_centre, _ = optics.camera_to_image_px(eye[0], eye[1], eye[2], 600.0)
    u_iris, _ = optics.camera_to_image_px(eye[0] + dx, eye[1], eye[2], 600.0)
    assert u_iris < u_centre
    yaw, pitch = optics.gaze_angles_deg(eye, [1.0, -8.0, 0.0])  # dot below: iris down
    assert pitch < 0 and optics.iris_offset_cm(yaw, pitch, 4.0, 2.2)[1] < 0
    assert optics.optical_angles_deg(0.0, 0.0, 5.0, 1.5, "right") == (5.0, -1.5)
    assert optics.optical_angles_deg(0.0, 0.0, 5.0, 1.5, "left") == (-5.0, -1.5)


def test_screen_point_inverts_gaze_angles():
    eye = np.array([0.5, -2.0, 30.0])
    target = np.array([2.5, -9.0, 0.0])
    for roll in (0.0, -4.0):
        yaw, pitch = optics.gaze_angles_deg(eye, target, roll)
        np.testing.assert_allclose(optics.screen_point_cm(eye, yaw, pitch, roll), target[:2],
                                   atol=1e-9)


def _pupil_u(image: np.ndarray, box: np.ndarray) -> float:
    """Column of the pupil (darkest blob) inside an eye box, in frame pixels."""
    x, y, w, h = (int(v) for v in box)
    grey = cv2.cvtColor(crop_with_padding(image, (x, y, w, h)), cv2.COLOR_BGR2GRAY)
    ys, xs = np.nonzero(grey <= grey.min() + 25)
    return x + float(xs.mean())


def test_rendered_iris_moves_to_the_image_left_when_the_subject_looks_right():
    params = syn.SyntheticParams(subjects=3, frames_per_subject=1, blur_max_sigma_px=0.0)
    rng = np.random.default_rng(0)
    subject = subjects.sample_subject(params, 0, "train", rng)
    frames = subjects.sample_frames(params, subject, rng)
    frames.blink[:] = False
    imaging, background = render.sample_imaging_conditions(rng), render.make_background(rng)
    boxes = recording.detector_boxes(params, subject, frames)
    face = [boxes["face"][k][0] for k in "XY"]
    right_eye = np.array([boxes["right_eye"][k][0] for k in "XYWH"]) + [*face, 0, 0]
    us = []
    for dx in (-1.0, 1.0):
        frames.iris_cm["right"][0] = (dx, 0.0)
        image = render.render_frame(params, subject, frames, 0, imaging, background)
        us.append(_pupil_u(image, right_eye))
    expected_px = 2.0 * params.focal_px / frames.head_cm[0, 2]
    assert us[1] < us[0] - 0.5 * expected_px  # looking right (+x): pupil moves to image left


# ----------------------------------------------------------------------------- determinism
def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    kwargs = dict(subjects=3, frames_per_subject=3, progress=False)
    syn.generate(tmp_path / "a", seed=5, workers=1, **kwargs)
    syn.generate(tmp_path / "b", seed=5, workers=2, **kwargs)  # processes must not matter
    syn.generate(tmp_path / "c", seed=6, workers=1, **kwargs)
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert len(a) == 3 * (3 + 8) + 2  # frames + 8 JSONs per recording, SYNTHETIC.json, marker
    assert a == b
    assert a.keys() == c.keys()
    assert a["00001/frames/00000.jpg"] != c["00001/frames/00000.jpg"]
    assert a["00001/dotInfo.json"] != c["00001/dotInfo.json"]


def test_a_subject_does_not_depend_on_how_many_are_generated(tmp_path, raw):
    syn.generate(tmp_path / "three", seed=0, subjects=3, frames_per_subject=6, workers=1,
                 progress=False)
    for name in ("frames/00005.jpg", "dotInfo.json", "appleFace.json", "appleLeftEye.json"):
        assert (tmp_path / "three/00002" / name).read_bytes() == (raw / "00002" / name).read_bytes()


# The `raw` fixture's labels and first frames, from the generator of GENERATOR_VERSION 2.
PINNED_LABELS_SHA256 = "73146eb2291be597f045e93fc2300f43b22525f30a720dbd61b1b0e24af48f87"
PINNED_FIRST_FRAME_MEANS = [118.53, 159.31, 151.9, 145.14]  # grey levels, one per recording


def test_generator_output_is_pinned(raw):
    """A change to the draws (their order included) changes every generated set, while the
    data module's cache is keyed by GENERATOR_VERSION: such a change must bump it."""
    digest = hashlib.sha256()
    for path in sorted(raw.rglob("*.json")):  # every label file and SYNTHETIC.json
        digest.update(str(path.relative_to(raw)).encode())
        digest.update(path.read_bytes())
    assert digest.hexdigest() == PINNED_LABELS_SHA256, (
        "the synthetic labels changed: if meant, bump GENERATOR_VERSION and update the pin")
    # JPEG bytes depend on OpenCV's libjpeg build, so frames are pinned by their mean only
    means = [float(cv2.imread(str(p)).mean()) for p in sorted(raw.glob("*/frames/00000.jpg"))]
    assert means == pytest.approx(PINNED_FIRST_FRAME_MEANS, abs=0.5), (
        "the synthetic frames changed: if meant, bump GENERATOR_VERSION and update the pin")


def test_default_set_size_is_the_training_configs():
    """``generate()`` without sizes builds the set ``tinytracker.train`` uses by default."""
    with initialize_config_dir(str(REPO / "tinytracker" / "conf"), version_base="1.3"):
        cfg = compose("train")
    configured = OmegaConf.to_container(cfg.data.synthetic, resolve=True)
    assert {"seed", "subjects", "frames_per_subject"} <= configured.keys()
    defaults = asdict(syn.SyntheticParams())
    assert configured == {key: defaults.get(key, "not a SyntheticParams field")
                          for key in configured}


def test_synthetic_json_reports_parameters_and_reference_errors(raw):
    info = json.loads((raw / "SYNTHETIC.json").read_text())
    assert info["version"] == syn.GENERATOR_VERSION
    assert info["params"]["subjects"] == 4 and info["params"]["seed"] == 0
    assert {len(v) for v in info["splits"].values()} == {1, 2} and len(info["splits"]) == 3
    ref = info["reference_errors_cm"]
    assert ref["mean_predictor"] > ref["irreducible"] > 0
    assert 0.2 < ref["fixation_noise"] < 0.6  # E|N(0, 0.3^2 I)| = 0.3 sqrt(pi/2) = 0.38


# ----------------------------------------------------------------------------- prepare
def test_prepare_writes_the_public_layout(raw, prepared):
    meta = _load_public(prepared / "metadata.mat")
    assert all(k in meta for k in KEYS)
    assert meta["labelRecNum"].dtype == np.int16 and meta["frameIndex"].dtype == np.int32
    assert meta["labelDotXCam"].dtype == np.float64 and meta["labelFaceGrid"].dtype == np.uint8
    n = sum(_valid_rows(r) for r in sorted(raw.glob("0*")))
    assert meta["labelRecNum"].shape == (n,) and meta["labelFaceGrid"].shape == (n, 4)
    flags = np.stack([meta[k].astype(bool) for k in ("labelTrain", "labelVal", "labelTest")])
    assert (flags.sum(axis=0) == 1).all()
    for split_key in ("labelTrain", "labelVal", "labelTest"):
        for index in np.argwhere(meta[split_key])[:, 0]:  # as ITrackerData.__init__
            _check_row(raw, prepared, meta, index)


def _check_row(raw: Path, prepared: Path, meta: dict, index: int) -> None:
    rec, frame = meta["labelRecNum"][index], meta["frameIndex"][index]
    for folder in ("appleFace", "appleLeftEye", "appleRightEye"):  # as ITrackerData.__getitem__
        path = "%05d/%s/%05d.jpg" % (rec, folder, frame)  # noqa: UP031 (the public code's)
        assert (prepared / path).is_file()
    face = json.loads((raw / f"{rec:05d}/appleFace.json").read_text())
    # synthetic recordings number their frames 0..N-1, so a frame index is also a JSON row
    with Image.open(prepared / f"{rec:05d}/appleFace/{frame:05d}.jpg") as img:
        # public script: int box + [-1, -1, 1, 1]
        assert img.size == (int(face["W"][frame]) + 1, int(face["H"][frame]) + 1)
    dot = json.loads((raw / f"{rec:05d}/dotInfo.json").read_text())
    assert meta["labelDotXCam"][index] == dot["XCam"][frame]
    assert meta["labelDotYCam"][index] == dot["YCam"][frame]
    grid = json.loads((raw / f"{rec:05d}/faceGrid.json").read_text())
    assert list(meta["labelFaceGrid"][index, :]) == [grid[k][frame] for k in "XYWH"]
    x, y, w, h = meta["labelFaceGrid"][index, :]
    assert x >= 1 and y >= 1 and x + w - 1 <= 25 and y + h - 1 <= 25


def test_prepared_directory_loads_with_the_recordings_info(prepared):
    index = load_index(prepared)
    assert set(index.split) == {"train", "val", "test"}
    extra = json.loads((prepared / "recordings.json").read_text())
    assert set(extra) == {"00001", "00002", "00003", "00004"}
    assert extra["00001"]["DeviceName"] == "iPhone 6"
    assert extra["00001"]["ScreenWidthCm"] == pytest.approx(5.85)


def test_resume_redoes_only_the_deleted_recording(raw, tmp_path):
    out = tmp_path / "out"
    first = prepare(raw, out)
    assert first.prepared == 4 and first.resumed == 0
    before = _load_public(out / "metadata.mat")
    shutil.rmtree(out / "00002")
    kept = {p: p.stat().st_mtime_ns for p in (out / "00003").rglob("*") if p.is_file()}
    second = prepare(raw, out)
    assert second.prepared == 1 and second.resumed == 3
    assert (out / "00002/.prepared").is_file()
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    after = _load_public(out / "metadata.mat")
    for key in KEYS:
        np.testing.assert_array_equal(after[key], before[key])


def test_resume_redoes_a_recording_whose_labels_changed(raw_copy, tmp_path):
    out = tmp_path / "out"
    prepare(raw_copy, out)
    rec = read_recording(raw_copy / "00003")
    row = int(np.flatnonzero(rec.valid)[0])
    frame = int(rec.frame_index[row])
    dot_path = raw_copy / "00003/dotInfo.json"
    dot = json.loads(dot_path.read_text())
    dot["XCam"][row] += 1.0
    dot_path.write_text(json.dumps(dot))
    report = prepare(raw_copy, out)
    assert report.prepared == 1 and report.resumed == 3
    meta = _load_public(out / "metadata.mat")
    hit = np.flatnonzero((meta["labelRecNum"] == 3) & (meta["frameIndex"] == frame))
    assert meta["labelDotXCam"][hit[0]] == dot["XCam"][row]


# ----------------------------------------------------------------------------- bad input
# Each damages one recording of a copy and returns (damaged file, its recording folder).
def _corrupt_jpeg(raw: Path) -> tuple[Path, Path]:
    rec = read_recording(raw / "00002")
    path = rec.frame_path(int(np.flatnonzero(rec.valid)[0]))
    path.write_bytes(b"this is not a jpeg" * 10)
    return path, rec.path


def _malformed_json(raw: Path) -> tuple[Path, Path]:
    path = raw / "00003/appleFace.json"
    path.write_text('{"X": [1, 2,')
    return path, path.parent


def _frames_without_labels(raw: Path) -> tuple[Path, Path]:
    path = raw / "00001/dotInfo.json"
    dot = json.loads(path.read_text())
    path.write_text(json.dumps({k: v[:-1] for k, v in dot.items()}))
    return path, path.parent


def _bad_dataset(raw: Path) -> tuple[Path, Path]:
    path = raw / "00004/info.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "Dataset": "training"}))
    return path, path.parent


@pytest.mark.parametrize(
    ("damage", "bad_frame_only"),
    [(_corrupt_jpeg, True), (_malformed_json, False), (_frames_without_labels, False),
     (_bad_dataset, False)],
)
def test_bad_input_raises_naming_the_file_or_is_skipped(raw_copy, tmp_path, damage,
                                                        bad_frame_only):
    rows = {r.name: _valid_rows(r) for r in sorted(raw_copy.glob("0*"))}
    bad_path, bad_rec = damage(raw_copy)
    with pytest.raises(DataFormatError, match=re.escape(str(bad_path))):
        prepare(raw_copy, tmp_path / "strict")
    report = prepare(raw_copy, tmp_path / "lenient", skip_bad=True)
    lost = 1 if bad_frame_only else rows[bad_rec.name]
    assert report.skipped_frames == int(bad_frame_only)
    assert report.skipped_recordings == int(not bad_frame_only)
    assert report.frames == sum(rows.values()) - lost
    meta = _load_public(tmp_path / "lenient/metadata.mat")
    assert len(meta["frameIndex"]) == report.frames
    assert (int(bad_rec.name) in meta["labelRecNum"]) == bad_frame_only


def test_missing_raw_dir_names_the_path(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(DataFormatError, match="no_such_dir") as err:
        prepare(missing, tmp_path / "out")
    assert "frames.json" in str(err.value)  # describes the expected layout


def test_clis_run_and_fail_with_the_path(tmp_path):
    proc = run_module("tinytracker.data.prepare", f"raw_dir={tmp_path / 'absent'}",
                      f"out_dir={tmp_path / 'out'}", check=False, timeout=120)
    assert proc.returncode == 1 and str(tmp_path / "absent") in proc.stderr
    run_module("tinytracker.data.synthetic", f"out_dir={tmp_path / 'gen'}", "subjects=3",
               "frames_per_subject=2", "workers=1", timeout=120)
    run_module("tinytracker.data.prepare", f"raw_dir={tmp_path / 'gen'}",
               f"out_dir={tmp_path / 'gen_out'}", "workers=2", timeout=120)
    assert (tmp_path / "gen_out/metadata.mat").is_file()
