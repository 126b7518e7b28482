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

from tests.conftest import REPO, kill_once_loadable, run_module


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
# At the paper's 112 px, not the default 64: a pack's shards take long enough to write that a
# kill lands inside them, and the full-disk arithmetic below counts 112 px crops.
SMALL_SET = ["data.synthetic.subjects=6", "data.synthetic.frames_per_subject=16",
             "data.pack_shard_mb=1", "data.num_workers=0", "data.face_size=112"]
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


# --------------------------------------------------------------------- files from elsewhere
@pytest.fixture(scope="module")
def small_sets(tmp_path_factory) -> tuple[Path, Path]:
    """A raw set of 4 subjects x 6 frames and its processed layout."""
    from tinytracker.data import synthetic as syn
    from tinytracker.data.prepare import prepare

    raw = tmp_path_factory.mktemp("faults") / "raw"
    syn.generate(raw, seed=0, subjects=4, frames_per_subject=6, workers=1, progress=False)
    prepare(raw, raw.parent / "processed")
    return raw, raw.parent / "processed"


def _metadata(path: Path) -> dict:
    import scipy.io

    return {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}


def _truncated(meta_path: Path) -> None:
    meta_path.write_bytes(meta_path.read_bytes()[:400])


def _missing_key(meta_path: Path) -> None:
    import scipy.io

    scipy.io.savemat(str(meta_path), {k: v for k, v in _metadata(meta_path).items()
                                      if k != "labelDotYCam"})


def _ragged_rows(meta_path: Path) -> None:
    import scipy.io

    meta = _metadata(meta_path)
    meta["labelDotXCam"] = meta["labelDotXCam"].ravel()[:-3]
    scipy.io.savemat(str(meta_path), meta)


def _overlapping_splits(meta_path: Path) -> None:
    import scipy.io

    meta = _metadata(meta_path)
    meta["labelVal"] = meta["labelVal"] | meta["labelTrain"]  # train frames also in val
    scipy.io.savemat(str(meta_path), meta)


def _nan_label(meta_path: Path) -> None:
    import scipy.io

    meta = _metadata(meta_path)
    meta["labelDotYCam"] = meta["labelDotYCam"].astype(float)
    meta["labelDotYCam"].flat[5] = float("inf")
    scipy.io.savemat(str(meta_path), meta)


@pytest.mark.parametrize(("damage", "expected"), [
    (_truncated, "is not a readable MATLAB file"),
    (_missing_key, r"lacks key\(s\) \['labelDotYCam'\]"),
    (_ragged_rows, "every key must have one row per frame"),
    (_overlapping_splits, "each frame must be in exactly one split"),
    (_nan_label, "row 5 has a non-finite labelDotXCam/YCam"),
])
def test_bad_metadata_mat_is_named_by_the_data_module(small_sets, tmp_path, damage, expected):
    import shutil

    from tinytracker.data.datamodule import GazeDataModule
    from tinytracker.data.processed import DataFormatError

    copy = Path(shutil.copytree(small_sets[1], tmp_path / "processed"))
    damage(copy / "metadata.mat")
    dm = GazeDataModule(source="gazecapture", root=str(copy), cache_dir=str(tmp_path / "c"),
                        format="jpeg")
    with pytest.raises(DataFormatError, match=expected) as err:
        dm.prepare_data()
        dm.setup()
    assert str(copy / "metadata.mat") in str(err.value)


def _raw_copy(small_sets, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(small_sets[0], tmp_path / "raw"))


def test_prepare_names_a_non_finite_raw_label(small_sets, tmp_path, capsys):
    from tinytracker.data.prepare import main as prepare

    raw = _raw_copy(small_sets, tmp_path)
    dot = raw / "00002" / "dotInfo.json"
    values = json.loads(dot.read_text())
    values["XCam"][0] = float("nan")  # json writes NaN, which Python's reader accepts
    dot.write_text(json.dumps(values))
    err = _exit_message(capsys, lambda: prepare([f"raw_dir={raw}", f"out_dir={tmp_path / 'p'}"]))
    assert str(dot) in err and "non-finite XCam/YCam" in err


def test_prepare_refuses_a_frame_name_outside_its_recording(small_sets, tmp_path, capsys):
    from tinytracker.data.prepare import main as prepare

    raw = _raw_copy(small_sets, tmp_path)
    outside = raw / "00001.jpg"  # beside the recordings: never to be read as a frame
    outside.write_bytes((raw / "00001" / "frames" / "00000.jpg").read_bytes())
    frames = raw / "00001" / "frames.json"
    names = json.loads(frames.read_text())
    names[0] = "../../00001.jpg"
    frames.write_text(json.dumps(names))
    out = tmp_path / "p"
    err = _exit_message(capsys, lambda: prepare([f"raw_dir={raw}", f"out_dir={out}"]))
    assert f"{frames}: entry 0 is '../../00001.jpg', expected a frame name like" in err
    assert not (out / "00001").exists()


def test_prepare_names_an_empty_raw_dir(tmp_path, capsys):
    from tinytracker.data.prepare import main as prepare

    (tmp_path / "raw").mkdir()
    err = _exit_message(capsys, lambda: prepare([f"raw_dir={tmp_path / 'raw'}",
                                                 f"out_dir={tmp_path / 'p'}"]))
    assert f"raw_dir {tmp_path / 'raw'} holds no recording folders" in err
    assert "frames.json" in err  # says what is expected


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained TinyTracker checkpoint as Lightning writes one (state_dict with the
    module's hyper_parameters): the files below are damaged copies of it."""
    import torch
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from tinytracker.models.module import GazeModule

    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.root_dir={REPO}"])
    module = GazeModule(net=OmegaConf.to_container(cfg.model.net, resolve=True),
                        input_spec={"face_size": 112, "grey": False, "mean": [0.5] * 3,
                                    "std": [0.5] * 3, "grid_embedding": True})
    path = tmp_path_factory.mktemp("ckpt") / "good.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": "2"}, path)
    return path


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    import numpy as np
    from PIL import Image

    path = tmp_path_factory.mktemp("photo") / "noise.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
                    ).save(path)
    return path


def _truncated_ckpt(good: Path, path: Path) -> None:
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])


def _plain_state_dict(good: Path, path: Path) -> None:
    import torch

    torch.save(torch.load(good, weights_only=True)["state_dict"], path)


def _other_model(good: Path, path: Path) -> None:
    import torch

    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"]["net"] = {"_target_": "tinytracker.models.itracker.ITracker"}
    torch.save(ckpt, path)


@pytest.mark.parametrize(("damage", "expected"), [
    (_truncated_ckpt, "is not a readable PyTorch checkpoint"),
    (_plain_state_dict, "holds a plain state_dict"),
    (_other_model, "does not match its model config"),
])
def test_predict_names_a_bad_checkpoint(checkpoint, photo, tmp_path, capsys, damage, expected):
    from tinytracker.models.checkpoint import module_from_checkpoint
    from tinytracker.predict.__main__ import main as predict

    module_from_checkpoint(checkpoint)  # the undamaged file loads
    bad = tmp_path / "bad.ckpt"
    damage(checkpoint, bad)
    err = _exit_message(capsys, lambda: predict([f"ckpt_path={bad}", f"input={photo}",
                                                 f"out_dir={tmp_path / 'out'}"]))
    assert str(bad) in err and expected in err


@pytest.fixture(scope="module")
def foreign_onnx(tmp_path_factory) -> Path:
    """An ONNX file with our input and output names but none of our metadata."""
    import torch

    class Mean(torch.nn.Module):
        def forward(self, face: torch.Tensor) -> torch.Tensor:
            return face.mean(dim=(2, 3))[:, :2]

    path = tmp_path_factory.mktemp("onnx") / "foreign.onnx"
    torch.onnx.export(Mean(), (torch.zeros(1, 3, 112, 112),), str(path), input_names=["face"],
                      output_names=["gaze_cm"], dynamo=False)
    return path


NO_METADATA = "does not record the preprocessing ['face_size', 'grey', 'mean', 'std']"


def test_predict_and_calibrate_name_an_onnx_file_without_our_metadata(foreign_onnx, photo,
                                                                      tmp_path, capsys):
    from hydra import compose, initialize_config_module

    from tinytracker.calibrate.__main__ import calibrate
    from tinytracker.predict.__main__ import main as predict

    err = _exit_message(capsys, lambda: predict([f"ckpt_path={foreign_onnx}", f"input={photo}",
                                                 f"out_dir={tmp_path / 'pred'}"]))
    assert f"ONNX file {foreign_onnx} {NO_METADATA}" in err
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("calibrate", overrides=[f"out_dir={tmp_path / 'cal'}",
                                              f"paths.root_dir={REPO}",
                                              f"onnx_path={foreign_onnx}"])
    with pytest.raises(ValueError) as exc:
        calibrate(cfg, tmp_path / "cal")
    assert f"ONNX file {foreign_onnx} {NO_METADATA}" in str(exc.value)


def test_predict_names_an_empty_folder_and_an_unreadable_video(checkpoint, tmp_path, capsys):
    from tinytracker.predict.__main__ import main as predict

    (tmp_path / "empty").mkdir()
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not a video" * 100)
    for source, expected in ((tmp_path / "empty", "is a folder without images (.jpg"),
                             (video, "cannot be read as a video or image")):
        err = _exit_message(capsys, lambda s=source: predict(
            [f"ckpt_path={checkpoint}", f"input={s}", f"out_dir={tmp_path / 'out'}"]))
        assert f"input={source} {expected}" in err


# ----------------------------------------------------------------------------- untrusted input
# docs/security.md lists what is trusted; each "not trusted" there has a test here.
def _with_net(good: Path, path: Path, key: str, cfg: dict) -> Path:
    import torch

    ckpt = torch.load(good, weights_only=True)
    ckpt["hyper_parameters"][key] = cfg
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize(("key", "target"), [
    ("net", "shutil.rmtree"),  # outside the package
    ("net", "tinytracker.atomic.write_text"),  # ours, but a function that writes files
    ("optimizer", "os.system"),
])
def test_a_checkpoint_config_cannot_call_anything_but_a_network(checkpoint, photo, tmp_path,
                                                                capsys, key, target):
    """Hydra's instantiate calls whatever ``_target_`` a checkpoint's config names: refused
    before anything is built, and the victim directory survives."""
    from tinytracker.predict.__main__ import main as predict

    victim = tmp_path / "victim"
    victim.mkdir()
    args = {"shutil.rmtree": [str(victim)], "tinytracker.atomic.write_text":
            [str(victim / "x"), "overwritten"], "os.system": [f"rm -r {victim}"]}[target]
    bad = _with_net(checkpoint, tmp_path / "crafted.ckpt", key,
                    {"_target_": target, "_args_": args})
    err = _exit_message(capsys, lambda: predict([f"ckpt_path={bad}", f"input={photo}",
                                                 f"out_dir={tmp_path / 'out'}"]))
    assert f"refusing to load {bad}: hyper_parameters.{key}._target_='{target}'" in err
    assert victim.is_dir() and not (victim / "x").exists()


def test_onnx_metadata_is_parsed_as_json_and_unknown_ops_are_refused(foreign_onnx, tmp_path):
    import onnx

    from tinytracker.data.spec import ONNX_METADATA_KEY
    from tinytracker.onnx_runner import OnnxRunner

    model = onnx.load(str(foreign_onnx))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: "__import__('os').system('x')"})
    crafted = tmp_path / "crafted.onnx"
    onnx.save(model, str(crafted))
    with pytest.raises(ValueError, match=f"{crafted}: its metadata is not the JSON"):
        OnnxRunner(crafted)

    node = onnx.helper.make_node("Exec", ["face"], ["gaze_cm"], domain="evil.ops")
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("face", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("gaze_cm", onnx.TensorProto.FLOAT, [1])])
    custom = tmp_path / "custom_op.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[
        onnx.helper.make_opsetid("", 13), onnx.helper.make_opsetid("evil.ops", 1)]), str(custom))
    with pytest.raises(ValueError, match=f"ONNX file {custom} cannot be loaded by ONNX Runtime"):
        OnnxRunner(custom)


def test_import_tflite_names_a_damaged_flatbuffer(tmp_path, capsys):
    from tinytracker.import_tflite.__main__ import main as import_tflite

    path = tmp_path / "damaged.tflite"
    path.write_bytes(b"\x18\x00\x00\x00TFL3" + bytes(range(256)) * 4)
    err = _exit_message(capsys, lambda: import_tflite([f"path={path}",
                                                       f"out={tmp_path / 'x.ckpt'}"]))
    assert f"{path} is not a readable TFLite flatbuffer" in err
    assert not (tmp_path / "x.ckpt").exists()


def test_a_pack_shard_holding_pickled_objects_is_refused(tmp_path):
    import numpy as np

    from tinytracker.data.packed import META_FILE, PackedSplit

    np.save(tmp_path / "train-face-00000.npy", np.array([{"a": 1}], dtype=object))
    (tmp_path / META_FILE).write_text(json.dumps({
        "fingerprint": {"fields": {"face": 112}}, "splits": {"train": {
            "frames": 1, "bad_rows": [],
            "shards": [{"frames": 1, "files": {"face": "train-face-00000.npy"}}]}}}))
    with pytest.raises(ValueError, match=f"pack shard {tmp_path / 'train-face-00000.npy'} is "
                                         "not a uint8 .npy array"):
        PackedSplit(tmp_path, "train").image(0, "face")


def test_no_code_path_downloads_or_loads_a_wandb_artifact():
    """W&B artifacts are only ever uploaded: nothing reads one back, so none is trusted."""
    sources = {p: p.read_text() for p in (REPO / "tinytracker").rglob("*.py")}
    readers = [f"{p.relative_to(REPO)}: {word}" for p, text in sources.items()
               for word in ("use_artifact", ".download(", "use_model(") if word in text]
    assert not readers


# ------------------------------------------------------------- full or read-only disks
def _in_small_filesystems(script: str, mounts: dict[str, str], env: dict | None = None,
                          timeout_s: float = 900) -> str:
    """Run the shell ``script`` in its own user and mount namespace (``unshare -rm``) where
    each of ``mounts`` (folder -> tmpfs options, e.g. ``size=64k`` or ``ro``) is a real,
    size-limited or read-only tmpfs: the kernel itself reports ENOSPC / EROFS. Returns the
    output; the mounts vanish with the namespace, so the script lists what they hold."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot mount a small filesystem")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs none /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine allows no private tmpfs mounts: {probe.stderr.strip()}")
    mount = " && ".join(f"mkdir -p {d} && mount -t tmpfs -o {o} tmpfs {d}"
                        for d, o in mounts.items())
    full_env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1",
                "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f"{mount} && {script}"], cwd=REPO,
                          env=full_env, capture_output=True, text=True, timeout=timeout_s)
    return proc.stdout + "\n--- stderr ---\n" + proc.stderr


FACE112_BYTES = 112 * 112 * 3  # one packed face crop
SMALL_SET_FRAMES = 91  # valid frames of SMALL_SET (seed 0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_full_disk_while_packing_is_named_and_leaves_no_partial_pack(tmp_path):
    """Two real tmpfs disks for the pack: one too small from the start (refused before
    writing), one that fills while the last shard is allocated (shards take whole pages)."""
    small, nearly = tmp_path / "small", tmp_path / "nearly"
    needed = SMALL_SET_FRAMES * FACE112_BYTES
    py = sys.executable
    pack = (f"{py} -m tinytracker.data.pack paths.root_dir={tmp_path} "
            f"{' '.join(SMALL_SET)}")
    out = _in_small_filesystems(
        f"{pack} out_dir={tmp_path}/r1 data.packed_dir={small}; echo rc1=$?; "
        f"{pack} out_dir={tmp_path}/r2 data.packed_dir={nearly}; echo rc2=$?; "
        f"echo left:; find {small} {nearly} -type f",
        {str(small): "size=1m", str(nearly): f"size={needed + 4096}"},
        env={"TINYTRACKER_CACHE_DIR": str(tmp_path / "cache")})
    assert "rc1=1" in out and "rc2=1" in out, out[-3000:]
    assert (f"packing needs {needed:,} bytes ({needed / 1e9:.2f} GB) but {small} has "
            f"1,048,576 bytes free; set data.packed_dir") in out
    shard = re.search(rf"no space left to write {nearly}/\.face112\.partial-[^/]+/"
                      r"(\S+\.npy): it needs ([\d,]+) bytes", out)
    assert shard, out[-3000:]
    assert shard[1] == "test-face-00000.npy"  # the last shard is the one that does not fit
    assert int(shard[2].replace(",", "")) == 16 * FACE112_BYTES + 128  # 16 test frames
    left = out.split("left:")[-1].split("--- stderr ---")[0].split()
    assert left and all(p.endswith("/.lock") for p in left), f"partial files left: {left}"


def test_a_read_only_cache_and_a_full_results_disk_are_named(tmp_path):
    """The synthetic generator on a read-only filesystem, and a run's metrics.json on one
    that is full: each names the path (and the bytes), and leaves no partial file."""
    ro, full = tmp_path / "ro", tmp_path / "full"
    py = sys.executable
    grow = ("from tinytracker.tracking import write_metrics; import sys; "
            f"write_metrics('{full}/metrics.json', {{'test/error_cm': 1.5}}); "
            f"write_metrics('{full}/metrics.json', {{f'k{{i}}': 'x' * 100 for i in range(2000)}})")
    out = _in_small_filesystems(
        f"{py} -m tinytracker.data.synthetic out_dir={ro}/synth subjects=3 "
        f"frames_per_subject=2; echo rc1=$?; {py} -c \"{grow}\"; echo rc2=$?; "
        f"echo left:; find {ro} {full} -type f; cat {full}/metrics.json",
        {str(ro): "ro", str(full): "size=64k"})
    assert "rc1=1" in out and "rc2=1" in out, out[-3000:]
    assert (f"tinytracker.data.synthetic: error: cannot write {ro}/synth (Read-only file "
            "system): its files to write; choose a directory you can write to") in out
    assert re.search(rf"WriteError: no space left to write {full}/metrics.json: it needs "
                     r"[\d,]+ bytes \([\d,]+ bytes free on its disk\)", out), out[-3000:]
    left = out.split("left:")[-1].split("--- stderr ---")[0]
    assert left.split()[0] == f"{full}/metrics.json" and ".tmp-" not in left
    assert '"test/error_cm": 1.5' in left  # the earlier, complete file is still there


# ----------------------------------------------------------------------------- resume
def _train_command(run_dir: Path, cache: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "TINYTRACKER_CACHE_DIR": str(cache), "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "tinytracker.train", f"out_dir={run_dir}", "logger=wandb",
         "trainer.max_epochs=4", "data.synthetic.subjects=6",
         "data.synthetic.frames_per_subject=16", "data.batch_size=8", *extra],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _wandb_run_ids(run_dir: Path) -> list[str]:
    return sorted(p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*"))


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_killed_run_resumes_into_its_own_directory(tmp_path):
    """kill -9 of ``tinytracker.train`` once ``last.ckpt`` exists, then the same command with
    ``ckpt_path=<run>/checkpoints/last.ckpt`` into the same directory: one W&B run id (two
    offline segments that ``wandb sync`` merges), the uninterrupted run's epoch count and
    errors, a metrics.json of the whole run, train.log appended."""
    run, whole = tmp_path / "run", tmp_path / "whole"
    uninterrupted = _train_command(whole, tmp_path / "cache")  # the reference, meanwhile
    _finish(uninterrupted)
    killed = _train_command(run, tmp_path / "cache")
    kill_once_loadable(killed, run / "checkpoints" / "last.ckpt")
    assert not (run / "metrics.json").exists()  # written at the end only
    (first_id,) = _wandb_run_ids(run)
    log_before = (run / "train.log").read_text()

    _finish(_train_command(run, tmp_path / "cache",
                           f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"))
    ids = _wandb_run_ids(run)
    assert len(ids) == 2 and set(ids) == {first_id}, f"W&B runs {ids}: expected one id"
    metrics = json.loads((run / "metrics.json").read_text())
    reference = json.loads((whole / "metrics.json").read_text())
    assert metrics["train/epochs"] == reference["train/epochs"] == 4
    for key in ("test/error_cm", "test/frames", "val/error_cm", "checkpoint", "model/params"):
        assert metrics.get(key) is not None, f"metrics.json lacks {key}"
    assert metrics["test/frames"] == reference["test/frames"]
    # one thread, one process: the resumed run continues the killed run's draws (shuffling
    # and augmentation, kept in the checkpoint), so it ends exactly where the other ends
    for key in ("test/error_cm", "val/error_cm", "train/error_cm"):
        assert metrics[key] == reference[key], key
    log_after = (run / "train.log").read_text()
    assert log_after.startswith(log_before) and len(log_after) > len(log_before)
    assert "resuming W&B run " + first_id in log_after


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_full_disk_while_checkpointing_is_named_and_leaves_no_partial_checkpoint(tmp_path):
    """Checkpoints on a real 3 MB tmpfs, smaller than one checkpoint (about 5.5 MB): the run
    stops naming the checkpoint and its bytes, and leaves no part of it on that disk."""
    ckpts = tmp_path / "ckpts"
    env = {"TINYTRACKER_CACHE_DIR": str(tmp_path / "cache")}
    out = _in_small_filesystems(
        f"{sys.executable} -m tinytracker.train out_dir={tmp_path}/run logger=csv "
        "trainer.max_epochs=1 data.synthetic.subjects=6 data.synthetic.frames_per_subject=16 "
        f"data.batch_size=8 callbacks.model_checkpoint.dirpath={ckpts}; echo rc=$?; "
        f"echo left:; find {ckpts} -type f",
        {str(ckpts): "size=3m"}, env=env)
    assert "rc=1" in out, out[-3000:]
    named = re.search(rf"train failed: no space left to write {ckpts}/(epoch000-\S+\.ckpt): "
                      r"it needs ([\d,]+) bytes", out)
    assert named, out[-3000:]
    assert int(named[2].replace(",", "")) > 3 * 1024 * 1024  # more than the disk holds
    assert "Traceback" not in out.split("--- stderr ---")[-1]
    left = out.split("left:")[-1].split("--- stderr ---")[0].split()
    assert left == [], f"partial files left: {left}"
