"""``python -m tinytracker.predict check=look_at_camera`` on the authors' released models.

The check runs predict's own pipeline on real photographs and on synthetic frames of a face
looking into the camera. Checked here: the framings and the geometry they imply (the known
synthetic boxes moved with the image, the face grid of a GazeCapture frame), the spreads
recomputed from the predictions, and the README's table, which must be this command's output.
"""

from __future__ import annotations

import json
import re
from itertools import combinations

import numpy as np
import pytest

from tests.conftest import REPO, SCIKIT_IMAGE, anchor_file, import_or_missing
from tinytracker.data.geometry import face_grid_from_rect
from tinytracker.import_tflite.__main__ import main as import_main
from tinytracker.predict.__main__ import main as predict
from tinytracker.predict.check import FRAMINGS, ISSUE_FRAMINGS

import_or_missing("ai_edge_litert", "pip install ai-edge-litert")  # reads the TFLite files
import_or_missing("skimage.data", SCIKIT_IMAGE)  # the astronaut
FILES = {"TinyTracker": "TinyTracker.tflite", "TinyTrackerS": "TinyTrackerS.tflite"}
# the command end to end on both models: about a minute and a half on 2 cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
for _name in FILES.values():
    anchor_file(_name)


@pytest.fixture(scope="module", params=list(FILES))
def checked(request, tmp_path_factory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp(request.param)
    ckpt = tmp / f"{request.param}.ckpt"
    import_main([f"path={anchor_file(FILES[request.param])}", f"out={ckpt}"])
    summary = predict([f"ckpt_path={ckpt}", "check=look_at_camera", f"out_dir={tmp / 'out'}"])
    assert json.loads((tmp / "out" / "look_at_camera.json").read_text()) == summary
    assert (tmp / "out" / "look_at_camera.md").read_text().startswith("Look-at-camera check")
    return request.param, summary


def _point(row: dict) -> tuple[float, float]:
    return row["x_cm"], row["y_cm"]


def test_every_photo_and_framing_is_predicted_and_the_spreads_follow(checked):
    _, summary = checked
    names = [p["photo"] for p in summary["photos"]]
    assert names[:2] == ["astronaut", "Grace Hopper"] and len(names) == 5
    assert summary["camera"]["name"] == "gazecapture" and summary["face_box"] == "apple_like"
    assert summary["input_spec"]["grid_convention"] == "authors_tf"
    for photo in summary["photos"]:
        rows = {r["framing"]: r for r in photo["framings"]}
        assert list(rows) == list(FRAMINGS)
        assert all(r["x_cm"] is not None for r in rows.values()), photo["photo"]
        points = [_point(rows[n]) for n in ISSUE_FRAMINGS]
        spread = max(np.hypot(a[0] - b[0], a[1] - b[1]) for a, b in combinations(points, 2))
        assert photo["spread_issue_framings_cm"] == pytest.approx(spread)
        assert photo["spread_all_cm"] >= photo["spread_issue_framings_cm"]
        assert photo["box_sensitivity_cm"] is not None


def test_synthetic_frames_keep_their_geometry_through_the_framings(checked):
    _, summary = checked
    for photo in summary["photos"][2:]:
        rows = {r["framing"]: r for r in photo["framings"]}
        original = rows["original"]
        assert original["frame_px"] == [480, 640] and photo["face_boxes"] == "known (generator)"
        # a GazeCapture frame: its face grid is faceGrid.json's
        assert original["face_grid"] == list(face_grid_from_rect(480, 640,
                                                                 *original["face_box"]))
        x, y, w, h = original["face_box"]
        mx, *rest = rows["mirrored"]["face_box"]
        assert abs(mx - (480 - x - w)) <= 1 and rest == [y, w, h]  # each rounded from float
        # a 3:4 frame is its own portrait window: the same input, the same answer
        assert _point(rows["portrait"]) == _point(original)
        assert _point(rows["portrait mirrored"]) == _point(rows["mirrored"])
        assert rows["shifted right"]["face_box"] == [x + 72, y, w, h]  # 15% of 480 px


def test_the_readme_table_is_this_commands_output(checked):
    model, summary = checked
    readme = (REPO / "README.md").read_text()
    for photo in summary["photos"][:2]:
        row = (f"| {model} | {photo['photo']} | {photo['spread_issue_framings_cm']:.2f} | "
               f"{photo['box_sensitivity_cm']:.2f} |")
        assert row in readme, f"README.md lacks {row!r} (rerun the command beside its table)"
    assert re.search(r"python -m tinytracker\.predict ckpt_path=\S+ check=look_at_camera", readme)
