"""Reliability under faults: nothing a user made is overwritten, every cache and output
survives a ``kill -9``, a full disk or an unwritable folder is named, and bad files from
elsewhere get an error naming the file and what was expected.

Everything runs the real commands (in-process through their ``main`` where that is the same
code, a subprocess where the fault is the process itself) on tiny synthetic sets.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
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


# ----------------------------------------------------------------------------- kill -9
SMALL_SET = ["data.synthetic.subjects=6", "data.synthetic.frames_per_subject=16",
             "data.pack_shard_mb=1", "data.num_workers=0"]
SET_DIR = "synthetic/v2-frames_per_subject16-seed0-subjects6"  # the data module's cache key


def _pack_command(cache: Path, run_dir: Path) -> subprocess.Popen:
    """``python -m tinytracker.data.pack`` of SMALL_SET into the cache ``cache``: generate,
    prepare and pack, the default data build. Its own session, so a kill reaches all of it."""
    env = {**os.environ, "TINYTRACKER_CACHE_DIR": str(cache), "WANDB_MODE": "offline",
           "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tinytracker.data.pack", f"out_dir={run_dir}",
         f"paths.root_dir={run_dir}", *SMALL_SET],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _kill_when(proc: subprocess.Popen, root: Path, pattern: str, timeout_s: float = 600) -> Path:
    """SIGKILL ``proc`` as soon as a file matching ``pattern`` (under ``root``) exists: the
    build is then in the middle of writing it. Polls the file system, no sleep that races."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = next(iter(root.glob(pattern)), None)
        if found is not None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return found
        if proc.poll() is not None:
            pytest.fail(f"the build finished before {pattern} appeared:\n{proc.stdout.read()}")
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"{pattern} did not appear within {timeout_s} s")


def _finish(proc: subprocess.Popen, timeout_s: float = 600) -> None:
    out, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, out[-4000:]


_MAT_DATE = re.compile(rb"Created on: [^\x00]*")


def _normalised(rel: str, data: bytes) -> bytes:
    """The bytes of a cache file, less what records when (not what) it was built: the date in
    ``metadata.mat``'s text header, the raw files' mtimes in a recording's ``.prepared``,
    the packing time, source path, crop-folder mtimes and ``metadata.mat`` hash (which holds
    its date) in ``PACK.json``."""
    name = rel.rsplit("/", 1)[-1]
    if name == "metadata.mat":
        return _MAT_DATE.sub(b"Created on: <date>", data[:116]) + data[116:]
    if name == ".prepared":
        marker = json.loads(data)
        marker["source"] = {k: v[:1] for k, v in marker["source"].items()}  # sizes only
        return json.dumps(marker, sort_keys=True).encode()
    if name == "PACK.json":
        meta = json.loads(data)
        for key in ("packed_s", "source"):
            meta.pop(key)
        for key in ("crop_folders_sha256", "metadata_sha256"):
            meta["fingerprint"].pop(key)
        return json.dumps(meta, sort_keys=True).encode()
    return data


def _cache_files(cache: Path) -> dict[str, bytes]:
    return {str(p.relative_to(cache)): _normalised(str(p.relative_to(cache)), p.read_bytes())
            for p in sorted(cache.rglob("*")) if p.is_file()}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_killed_data_build_reruns_to_the_clean_cache(tmp_path):
    """kill -9 of the real data build during generation, preparation and packing: after each
    kill nothing half-written is visible under a trusted name, and the rerun's cache equals
    (byte for byte, less build times) one built by two concurrent uninterrupted builds."""
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    # two builders of one cache at once (two sweep trials): both must succeed
    builders = [_pack_command(clean, tmp_path / f"clean-run{i}") for i in range(2)]
    data = killed / SET_DIR

    # 1. while a subject's frames are being written (third of six)
    _kill_when(_pack_command(killed, tmp_path / "run1"), killed,
               f"{SET_DIR}/.raw.partial-*/00003/frames/*.jpg")
    assert not (data / "raw").exists(), "a half-generated set is visible as raw/"
    # 2. while recordings are being cropped (after two are done)
    _kill_when(_pack_command(killed, tmp_path / "run2"), killed,
               f"{SET_DIR}/processed/.0000[3-6].partial-*/appleFace/*.jpg")
    assert (data / "raw" / "SYNTHETIC.json").is_file()
    assert not (data / "processed" / "metadata.mat").exists()
    for rec in (data / "processed").glob("0*"):
        assert (rec / ".prepared").is_file(), f"{rec} is visible but half-prepared"
    # 3. while the train split's shards are being written
    _kill_when(_pack_command(killed, tmp_path / "run3"), killed,
               f"{SET_DIR}/packed/.face112.partial-*/train-face-00000.npy")
    assert (data / "processed" / ".complete").is_file()
    assert not (data / "packed" / "face112").exists(), "a half-written pack is visible"
    # the rerun resumes: the leftovers of the killed runs are removed, the rest is rebuilt
    _finish(_pack_command(killed, tmp_path / "run4"))
    for proc in builders:
        _finish(proc)

    got, want = _cache_files(killed), _cache_files(clean)
    assert sorted(got) == sorted(want), (
        f"only after the kills: {sorted(set(got) - set(want))}; "
        f"only in the clean build: {sorted(set(want) - set(got))}")
    differing = [rel for rel in want if got[rel] != want[rel]]
    assert not differing, f"files differ from the clean build: {differing}"
    assert any(rel.endswith(".npy") for rel in want) and len(want) > 500
