"""Reliability under faults: nothing a user made is overwritten, every cache and output
survives a ``kill -9``, a full disk or an unwritable folder is named, and bad files from
elsewhere get an error naming the file and what was expected.

Everything runs the real commands (in-process through their ``main`` where that is the same
code, a subprocess where the fault is the process itself) on tiny synthetic sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REPO, run_module


# ----------------------------------------------------------------------------- overwrite
def _exit_message(capsys, call) -> str:
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code not in (0, None)
    return capsys.readouterr().err


def test_predict_refuses_an_out_dir_with_predictions(tmp_path, capsys):
    from tinytracker.predict.__main__ import main as predict

    out = tmp_path / "pred"
    out.mkdir()
    (out / "predictions.csv").write_text("mine\n")
    (out / "photo_gaze.png").write_bytes(b"mine")
    args = [f"ckpt_path={tmp_path / 'absent.ckpt'}", f"input={tmp_path}", f"out_dir={out}"]
    err = _exit_message(capsys, lambda: predict(args))
    assert f"out_dir={out} already holds photo_gaze.png, predictions.csv" in err
    assert "overwrite=true" in err
    assert (out / "predictions.csv").read_text() == "mine\n"
    # overwrite=true gets past the refusal (to the input folder, which holds no image)
    err = _exit_message(capsys, lambda: predict([*args, "overwrite=true"]))
    assert "already holds" not in err and "is a folder without images" in err


def test_import_tflite_refuses_an_existing_out(tmp_path, capsys):
    from tinytracker.import_tflite.__main__ import main as import_tflite

    out = tmp_path / "mine.ckpt"
    out.write_bytes(b"a user's checkpoint")
    args = [f"path={tmp_path / 'absent.tflite'}", f"out={out}"]
    err = _exit_message(capsys, lambda: import_tflite(args))
    assert f"out={out} already exists; pass overwrite=true" in err
    assert out.read_bytes() == b"a user's checkpoint"
    err = _exit_message(capsys, lambda: import_tflite([*args, "overwrite=true"]))
    assert "already exists" not in err and "absent.tflite" in err


def test_calibrate_refuses_an_out_dir_with_calibration_files(tmp_path):
    from hydra import compose, initialize_config_module

    from tinytracker.calibrate.__main__ import calibrate

    out = tmp_path / "cal"
    out.mkdir()
    (out / "corrections.json").write_text("{}")
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=[f"out_dir={out}", f"paths.root_dir={REPO}",
                                              f"ckpt_path={tmp_path / 'absent.ckpt'}"])
        again = compose("calibrate", overrides=[f"out_dir={out}", f"paths.root_dir={REPO}",
                                                f"ckpt_path={tmp_path / 'absent.ckpt'}",
                                                "overwrite=true"])
    with pytest.raises(FileExistsError, match=r"already holds corrections\.json"):
        calibrate(cfg, out)
    assert (out / "corrections.json").read_text() == "{}"
    with pytest.raises(Exception) as exc:  # past the refusal: the checkpoint is missing
        calibrate(again, out)
    assert "absent.ckpt" in str(exc.value)


def test_export_command_refuses_an_out_dir_with_an_export(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "export.json").write_text('{"mine": true}\n')
    proc = run_module("tinytracker.export", f"ckpt_path={tmp_path / 'absent.ckpt'}",
                      f"out_dir={out}", check=False)
    assert proc.returncode == 1
    assert f"out_dir={out} already holds export.json" in proc.stderr
    assert "overwrite=true" in proc.stderr
    assert json.loads((out / "export.json").read_text()) == {"mine": True}


def test_refusal_needs_only_the_outputs_absent(tmp_path):
    from tinytracker.cli import refuse_overwrite

    refuse_overwrite(tmp_path / "new", ("export.json",), False)  # not there yet
    (tmp_path / "train.log").write_text("a run's log")  # not an export's output
    refuse_overwrite(tmp_path, ("export.json", "model.onnx"), False)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(FileExistsError, match="model.onnx"):
        refuse_overwrite(tmp_path, ("export.json", "model.onnx"), False)
    refuse_overwrite(tmp_path, ("export.json", "model.onnx"), True)
    assert Path(tmp_path / "model.onnx").exists()
