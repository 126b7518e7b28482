"""``python -m tinytracker.predict`` on real photographs, a folder, a video, and ONNX.

The model is a real (tiny) training run of ``python -m tinytracker.train``; its predictions
are meaningless, the pipeline around them is what is checked: detection in GazeCapture's
conventions, the data pipeline's inputs, the outputs, and the screen conversion.
"""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.conftest import (
    SCIKIT_IMAGE,
    import_or_missing,
    missing_install,
    run_module,
)
from tinytracker.data.dataset import IMAGE_FIELDS, GazeDataset
from tinytracker.data.gazecapture import list_recordings, load_frame, read_recording
from tinytracker.data.inputs import frame_crops, frame_inputs
from tinytracker.data.prepare import JPEG_QUALITY
from tinytracker.data.processed import crop_path, load_index
from tinytracker.data.spec import SampleSpec
from tinytracker.predict.__main__ import main as predict
from tinytracker.predict.screen import preset

# scikit-image ships the photographs
skimage_data = import_or_missing("skimage.data", SCIKIT_IMAGE)
if not hasattr(cv2, "CascadeClassifier"):
    missing_install(f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 moved them out "
                    "of the main package): install opencv-python-headless<5")

# Where the astronaut's face is (skimage.data.astronaut(), 512x512): around (223, 113).
ASTRONAUT_FACE_CENTRE = (223, 113)


def write_rgb(path, image) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.fixture(scope="module")
def trained(float_run) -> str:
    """The session's tiny float TinyTracker (conftest): 64 px, with the grid embedding."""
    return float_run["checkpoint"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    return {"astronaut": write_rgb(folder / "astronaut.png", skimage_data.astronaut()),
            "coffee": write_rgb(folder / "coffee.jpg", skimage_data.coffee())}


def read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_astronaut_face_gaze_and_outputs(trained, photos, tmp_path):
    run_module("tinytracker.predict", f"ckpt_path={trained}", f"input={photos['astronaut']}",
               f"out_dir={tmp_path}", "screen=iPhone 6")
    (row,) = read_csv(tmp_path / "predictions.csv")
    assert row["face_found"] == "true" and row["note"] == ""
    x, y, w, h = (int(row[f"face_{k}"]) for k in "xywh")
    assert abs(x + w / 2 - ASTRONAUT_FACE_CENTRE[0]) < 30
    assert abs(y + h / 2 - ASTRONAUT_FACE_CENTRE[1]) < 30
    # eyes relative to the face box; the subject's left eye is on the image's right; their
    # centres inside the (Apple-like) face box
    assert int(row["left_eye_x"]) > int(row["right_eye_x"])
    for eye in ("left_eye", "right_eye"):
        ex, ey, ew, eh = (int(row[f"{eye}_{k}"]) for k in "xywh")
        assert 0 <= ex + ew / 2 <= w and 0 <= ey + eh / 2 <= h
    x_cm, y_cm = float(row["x_cm"]), float(row["y_cm"])
    assert np.isfinite([x_cm, y_cm]).all()
    # iPhone 6 (GazeCapture apple_device_data.csv): camera 18.61 mm right of the screen's left
    # edge, 8.03 mm above it; 58.50 x 104.05 mm, 375 x 667 pt, 2 px per pt
    assert float(row["screen_x_pt"]) == pytest.approx((x_cm + 1.861) / 5.850 * 375, abs=0.02)
    assert float(row["screen_y_pt"]) == pytest.approx((-y_cm - 0.803) / 10.405 * 667, abs=0.02)
    assert float(row["screen_x_px"]) == pytest.approx(2 * float(row["screen_x_pt"]), abs=0.01)
    frame = json.loads((tmp_path / "predictions.json").read_text())["frames"][0]
    assert frame["face_found"] is True and frame["x_cm"] == pytest.approx(x_cm, abs=1e-4)
    annotated = cv2.imread(str(tmp_path / "astronaut_gaze.png"))
    assert annotated.shape == (512, 512, 3)
    original = cv2.imread(photos["astronaut"])
    face_edge = annotated[y, x:x + w].astype(int) - original[y, x:x + w]
    assert np.abs(face_edge).mean() > 20  # the face box is drawn


def test_the_camera_sets_the_frame_behind_the_face_grid(trained, photos, tmp_path, capsys):
    from tinytracker.data.geometry import GAZECAPTURE_FOV_DEG, camera_face_grid, face_grid_from_rect

    grids = {}
    for camera in ("gazecapture", "photo"):
        predict([f"ckpt_path={trained}", f"input={photos['astronaut']}", "annotate=false",
                 f"out_dir={tmp_path / camera}", f"camera={camera}"])
        out = json.loads((tmp_path / camera / "predictions.json").read_text())
        frame = out["frames"][0]
        grids[camera] = frame["face_grid"]
        assert out["camera"]["name"] == camera and out["face_box"] == "apple_like"
        assert out["input_spec"]["grid_convention"] == "cell_edges"  # our model: ours
    assert out["camera"]["fov_deg_shorter_side"] is None
    box = frame["face_box"]
    assert grids["photo"] == list(face_grid_from_rect(512, 512, *box))
    # the square photo as a GazeCapture camera's frame: its 512 px span the 480 px side of a
    # 480x640 frame, so the face's row moves towards the middle of 640
    assert grids["gazecapture"] == list(camera_face_grid(box, (512, 512), GAZECAPTURE_FOV_DEG))
    assert grids["gazecapture"][1] > grids["photo"][1]
    for bad, key in (("camera=fisheye", "gazecapture, photo"), ("camera_fov_deg=0", "(0, 180)")):
        with pytest.raises(SystemExit):
            predict([f"ckpt_path={trained}", f"input={photos['astronaut']}", bad,
                     f"out_dir={tmp_path / 'bad'}"])
        assert key in capsys.readouterr().err


def test_images_are_read_as_rgb_and_never_mirrored(tmp_path):
    """The channel order and orientation the models were trained on (GazeCapture's frames,
    decoded as RGB): a red left half stays red and on the left."""
    from tinytracker.predict.sources import open_source

    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :4] = (255, 0, 0)  # RGB red, left half
    (frame,) = open_source(write_rgb(tmp_path / "red.png", image)).frames
    np.testing.assert_array_equal(frame.image, image)


def test_screen_preset_matches_hand_computed_numbers():
    screen = preset("iphone_6")
    at = screen.locate(0.5, -3.0)  # 0.5 cm right of the camera, 3 cm below it
    # (0.5 + 1.861) cm from the left edge, (3.0 - 0.803) cm from the top edge
    assert at["screen_x_cm"] == pytest.approx(2.361)
    assert at["screen_y_cm"] == pytest.approx(2.197)
    assert at["screen_x_pt"] == pytest.approx(2.361 / 5.850 * 375)  # 151.346
    assert at["screen_y_pt"] == pytest.approx(2.197 / 10.405 * 667)  # 140.836
    assert at["screen_x_px"] == pytest.approx(302.692, abs=1e-3)
    assert at["screen_y_px"] == pytest.approx(281.672, abs=1e-3)
    assert at["on_screen"] is True
    assert screen.locate(0.0, 1.0)["on_screen"] is False  # above the camera
    with pytest.raises(ValueError, match="unknown screen preset"):
        preset("Pixel 9")


def test_photo_without_face_is_reported_as_such(trained, photos, tmp_path):
    summary = predict([f"ckpt_path={trained}", f"input={photos['coffee']}",
                       f"out_dir={tmp_path}", "screen=iPad Air 2"])
    assert summary["frames_with_face"] == 0 and summary["frames_with_gaze"] == 0
    (row,) = read_csv(tmp_path / "predictions.csv")
    assert row["face_found"] == "false" and row["note"] == "no face found"
    assert row["x_cm"] == row["y_cm"] == row["screen_x_pt"] == ""
    frame = json.loads((tmp_path / "predictions.json").read_text())["frames"][0]
    assert frame["x_cm"] is None and frame["screen_x_pt"] is None
    assert (tmp_path / "coffee_gaze.png").is_file()


def test_missing_input_fails_naming_the_path(trained, tmp_path, capsys):
    missing = tmp_path / "no_such_photo.jpg"
    with pytest.raises(SystemExit) as exit_info:
        predict([f"ckpt_path={trained}", f"input={missing}", f"out_dir={tmp_path / 'out'}"])
    assert exit_info.value.code == 1
    assert str(missing) in capsys.readouterr().err


def test_folder_of_images(trained, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_rgb(folder / "a_astronaut.jpg", skimage_data.astronaut())
    write_rgb(folder / "b_coffee.png", skimage_data.coffee())
    (folder / "c_broken.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")
    summary = predict([f"ckpt_path={trained}", f"input={folder}", f"out_dir={tmp_path / 'out'}"])
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert [r["source"] for r in rows] == ["a_astronaut.jpg", "b_coffee.png", "c_broken.png"]
    assert [r["face_found"] for r in rows] == ["true", "false", "false"]
    assert summary["unreadable"] == ["c_broken.png"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == [
        "a_astronaut_gaze.png", "b_coffee_gaze.png"]


def test_video_file(trained, tmp_path):
    face = cv2.resize(cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR), (320, 320))
    blank = np.full_like(face, 90)
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 320))
    assert writer.isOpened()
    for frame in (face, face, blank, face, blank):
        writer.write(frame)
    writer.release()
    summary = predict([f"ckpt_path={trained}", f"input={path}", f"out_dir={tmp_path / 'out'}"])
    assert summary["input_kind"] == "video" and summary["frames_total"] == 5
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert [r["face_found"] for r in rows] == ["true", "true", "false", "true", "false"]
    assert [r["x_cm"] != "" for r in rows] == [True, True, False, True, False]
    video = cv2.VideoCapture(str(tmp_path / "out" / "clip_gaze.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    video.release()


def test_exported_onnx_gives_the_checkpoints_gaze(trained, photos, tmp_path):
    from tinytracker.export.onnx import export_onnx
    from tinytracker.models.checkpoint import module_from_checkpoint

    module = module_from_checkpoint(trained)
    onnx_path = export_onnx(module.net, tmp_path / "model.onnx",
                            dict(module.hparams["input_spec"]))
    by_ckpt = predict([f"ckpt_path={trained}", f"input={photos['astronaut']}",
                       f"out_dir={tmp_path / 'ckpt'}"])
    by_onnx = predict([f"ckpt_path={onnx_path}", f"input={photos['astronaut']}",
                       f"out_dir={tmp_path / 'onnx'}"])
    assert by_onnx["model_inputs"] == by_ckpt["model_inputs"] == ["face", "grid_embedding"]
    (a,) = read_csv(tmp_path / "ckpt" / "predictions.csv")
    (b,) = read_csv(tmp_path / "onnx" / "predictions.csv")
    assert float(a["x_cm"]) == pytest.approx(float(b["x_cm"]), abs=2e-4)
    assert float(a["y_cm"]) == pytest.approx(float(b["y_cm"]), abs=2e-4)


def test_live_crops_are_prepares_crops(trained, cache_dir):
    """predict's crops of a raw frame are, pixel for pixel, the crops prepare stored for
    training (compared after the same JPEG encoding prepare applies)."""
    raw = next(cache_dir.glob("synthetic/*/raw"))
    processed = raw.parent / "processed"
    rec = read_recording(list_recordings(raw)[0])
    rows = np.flatnonzero(rec.valid)[:3]
    assert len(rows) > 0
    for row in rows:
        frame = load_frame(rec, row)
        live = frame_crops(frame, rec.face.xywh[row], IMAGE_FIELDS, rec.left_eye.xywh[row],
                           rec.right_eye.xywh[row])
        for name in IMAGE_FIELDS:
            buffer = io.BytesIO()
            Image.fromarray(live[name]).save(buffer, format="JPEG", quality=JPEG_QUALITY)
            stored = crop_path(processed, rec.rec_num, int(rec.frame_index[row]), name)
            # the full frame (model.position=frame) is stored as the raw file, not re-encoded
            expected = live[name] if name == "frame" else np.asarray(Image.open(buffer))
            np.testing.assert_array_equal(expected, np.asarray(Image.open(stored).convert("RGB")),
                                          err_msg=str(stored))


def test_frame_inputs_are_the_datasets(trained, cache_dir):
    """Face grid and grid embedding equal the dataset's; the face up to its JPEG round trip."""
    raw = next(cache_dir.glob("synthetic/*/raw"))
    rec = read_recording(list_recordings(raw)[0])
    index = load_index(raw.parent / "processed")
    spec = SampleSpec(inputs=("face", "face_grid", "grid_embedding"), face_size=64)
    dataset = GazeDataset(index, spec)
    i = int(np.flatnonzero(index.rec_num == rec.rec_num)[0])
    row = int(np.flatnonzero(rec.frame_index == index.frame_index[i])[0])
    sample = dataset[i]
    ours = frame_inputs(load_frame(rec, row), rec.face.xywh[row], spec)
    np.testing.assert_array_equal(ours["face_grid"], sample["face_grid"].numpy())
    np.testing.assert_array_equal(ours["grid_embedding"], sample["grid_embedding"].numpy())
    assert np.abs(ours["face"] - sample["face"].numpy()).mean() < 0.03  # JPEG q95 of crops


def test_model_with_eye_inputs_gets_both_eye_crops(photos, tmp_path):
    """iTracker takes face, both eyes and the face grid: built from the Haar boxes."""
    import torch

    from tinytracker.models.module import GazeModule

    spec = {"face_size": 224, "eye_size": 224, "grey": False, "grid_embedding": False,
            "mean": 0.5, "std": 0.5}
    torch.manual_seed(0)
    module = GazeModule(net={"_target_": "tinytracker.models.ITracker"}, input_spec=spec)
    ckpt = tmp_path / "itracker.ckpt"
    torch.save({"state_dict": module.state_dict(),
                "hyper_parameters": {"net": dict(module.hparams["net"]), "input_spec": spec}},
               ckpt)
    summary = predict([f"ckpt_path={ckpt}", f"input={photos['astronaut']}",
                       f"out_dir={tmp_path / 'out'}", "annotate=false"])
    assert summary["model_inputs"] == ["face", "eye_left", "eye_right", "face_grid"]
    assert summary["frames_with_gaze"] == 1 and summary["annotated"] == []
