"""``model.position`` (issue 15): input | none | late | frame, from the data fields to QAT.

In-process on a tiny synthetic set (32 px inputs, the real datamodule and its packed format),
except the ``fast_dev_run`` of ``python -m tinytracker.train`` per choice (slow tier).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from PIL import Image

from tests.conftest import REPO, SMALL_DATA, read_metrics, run_module
from tinytracker.assemble import build_module
from tinytracker.config import POSITIONS, ConfigError, validate_train_config
from tinytracker.data import synthetic as syn
from tinytracker.data.datamodule import GazeDataModule
from tinytracker.data.geometry import inference_roi, normalised_face_box
from tinytracker.data.prepare import prepare
from tinytracker.data.processed import load_index
from tinytracker.data.transforms import to_tensor_layout
from tinytracker.deploy.roi import (
    RoiError,
    RoiRule,
    emulate_isp,
    face_roi,
    full_frame_roi,
    normalised_box,
)
from tinytracker.export.onnx import export_onnx
from tinytracker.models import TinyTracker, TinyTrackerS
from tinytracker.models.regressor import LateHead
from tinytracker.quant.brevitas import BrevitasNet, calibrate

# conf/ may move into the package (tinytracker/conf/); the tests follow it
CONF = REPO / "tinytracker" / "conf"
TINY = [*SMALL_DATA, "data.face_size=32", "model.net.width_mult=0.25"]
EXPERIMENTS = {"tinytracker": "tinytracker", "tinytracker_s": "tinytracker_s"}
SENSOR_KEYS = {"input": ("face", "grid_embedding"), "none": ("face",), "late": ("face",),
               "frame": ("frame",)}
INPUT_KEYS = {"input": ("face", "grid_embedding"), "none": ("face",),
              "late": ("face", "face_box"), "frame": ("frame",)}


def _cfg(*overrides: str):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides))


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> tuple[Path, Path]:
    raw = tmp_path_factory.mktemp("position") / "raw"
    syn.generate(raw, seed=5, subjects=4, frames_per_subject=6, workers=1, progress=False)
    out = raw.parent / "processed"
    prepare(raw, out)
    return raw, out


def _batch(root: Path, inputs: tuple[str, ...], fmt: str, size: int = 32, grey: bool = False):
    dm = GazeDataModule(name="gazecapture", source="gazecapture", root=str(root),
                        cache_dir=str(root.parent / "cache"), augment={"enabled": False},
                        inputs=inputs, face_size=size, grey=grey, batch_size=64, format=fmt)
    dm.prepare_data()
    dm.setup("fit")
    return dm, next(iter(dm.test_dataloader()))


# ----------------------------------------------------------------------------- data fields
def test_prepare_records_face_boxes_and_links_the_raw_frames(processed):
    raw, out = processed
    index = load_index(out)
    assert index.face_box_px is not None and index.face_box_px.shape == (len(index), 4)
    assert index.frame_size is not None and (index.frame_size > 0).all()
    rec, frame = int(index.rec_num[0]), int(index.frame_index[0])
    linked = out / f"{rec:05d}" / "frames" / f"{frame:05d}.jpg"
    source = raw / f"{rec:05d}" / "frames" / f"{frame:05d}.jpg"
    assert linked.read_bytes() == source.read_bytes()
    with Image.open(source) as img:
        assert tuple(index.frame_size[0]) == img.size


def test_face_box_geometry_is_the_cameras_roi():
    """The training field's ROI (data/) is the camera's (deploy/, which builds on it with its
    edge policy): the same rectangle and normalised box for every box, and both what the rule
    says, checked here from the GazeCapture crop alone: the square of the crop's longer side
    about its centre, cut to the frame."""
    rng = np.random.default_rng(0)
    frame = (640, 480)
    boxes = [(300.4, 200.9, 120.0, 90.5), (-30.0, 10.0, 100.0, 140.0), (600.0, 420.0, 90.0, 90.0),
             *[tuple(rng.uniform([-50, -50, 20, 20], [620, 460, 300, 300])) for _ in range(200)]]
    for box in boxes:
        try:
            roi = face_roi(box, RoiRule(), frame)
        except RoiError:  # wholly outside the frame: refused by both
            with pytest.raises(ValueError, match="outside"):
                inference_roi(box, frame)
            continue
        assert inference_roi(box, frame) == roi.rect
        np.testing.assert_array_equal(normalised_face_box(box, frame), normalised_box(roi))
        # prepareDataset.py's crop: truncated, one pixel up-left and one wider and taller
        x, y, w, h = (int(v) for v in box)
        x, y, w, h = x - 1, y - 1, w + 1, h + 1
        side = max(w, h)
        x0, y0 = x + w / 2 - side / 2, y + h / 2 - side / 2  # the square about the centre
        expected = (max(0, x0), max(0, y0), min(frame[0], x0 + side), min(frame[1], y0 + side))
        rx, ry, rw, rh = roi.rect
        np.testing.assert_allclose((rx, ry, rx + rw, ry + rh), expected, atol=0.5 + 1e-9)


@pytest.mark.parametrize("fmt", ["jpeg", "packed"])
def test_face_box_field_is_the_normalised_roi_of_each_frame(processed, fmt):
    _, out = processed
    dm, batch = _batch(out, ("face", "face_box"), fmt)
    index = dm.datasets["test"].index
    assert batch["face_box"].dtype == torch.float32 and batch["face_box"].shape[1] == 4
    for k in range(len(batch["face_box"])):
        roi = face_roi(index.face_box_px[k], RoiRule(), tuple(index.frame_size[k]))
        np.testing.assert_array_equal(batch["face_box"][k].numpy(), normalised_box(roi))


@pytest.mark.parametrize("fmt", ["jpeg", "packed"])
@pytest.mark.parametrize("grey", [False, True])
def test_frame_field_is_the_isp_stretch_of_the_full_frame(processed, fmt, grey):
    raw, out = processed
    size = 48
    dm, batch = _batch(out, ("frame",), fmt, size=size, grey=grey)
    index = dm.datasets["test"].index
    assert batch["frame"].shape == (len(index), 1 if grey else 3, size, size)
    for k in range(3):
        path = raw / f"{index.rec_num[k]:05d}" / "frames" / f"{index.frame_index[k]:05d}.jpg"
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        roi = full_frame_roi((rgb.shape[1], rgb.shape[0]))
        isp = emulate_isp(rgb, roi, (size, size), "Y" if grey else "RGB")
        image = isp.transpose(1, 2, 0)
        expected = (image.astype(np.float32).transpose(2, 0, 1) / 255.0 - 0.5) / 0.5 if grey \
            else to_tensor_layout(image, False, 0.5, 0.5)
        np.testing.assert_allclose(batch["frame"][k].numpy(), expected, atol=1e-6)


def test_packed_and_jpeg_give_the_same_late_and_frame_fields(processed):
    _, out = processed
    inputs = ("face", "face_box", "frame")
    _, jpeg = _batch(out, inputs, "jpeg")
    _, packed = _batch(out, inputs, "packed")
    for key in inputs:
        torch.testing.assert_close(jpeg[key], packed[key], rtol=0, atol=0)


# ----------------------------------------------------------------------------- config
def test_bad_position_fails_naming_the_key(cache_dir):
    with pytest.raises(ConfigError, match="model.position must be one of input, none"):
        validate_train_config(_cfg("model.position=sideways"))
    with pytest.raises(ConfigError, match="data.grid_embedding=true does not fit model.position"):
        validate_train_config(_cfg("model.position=late", "data.grid_embedding=true"))
    with pytest.raises(ValueError, match=r"position \(model.position\) must be one of"):
        TinyTracker(position="sideways")
    with pytest.raises(ValueError, match="grid_embedding=True does not fit position='none'"):
        TinyTrackerS(grid_embedding=True, position="none")


@pytest.mark.parametrize("position", POSITIONS)
def test_grid_embedding_follows_the_position(position):
    cfg = _cfg(f"model.position={position}")
    validate_train_config(cfg)
    assert cfg.data.grid_embedding is (position == "input")
    assert cfg.model.net.position == position


# ----------------------------------------------------------------------------- nets
@pytest.fixture(scope="module")
def real_batches(cache_dir, one_torch_thread) -> dict:
    """One training batch of the real datamodule (default config, small synthetic set) per
    model and position, and the module built from the same config."""
    out = {}
    for model, experiment in EXPERIMENTS.items():
        for position in POSITIONS:
            cfg = _cfg(*TINY, f"+experiment={experiment}", f"model.position={position}")
            validate_train_config(cfg)
            module = build_module(cfg)
            dm = instantiate(cfg.data, _convert_="all")
            dm.set_inputs(module.input_keys)
            dm.prepare_data()
            dm.setup("fit")
            out[model, position] = (module, next(iter(dm.train_dataloader())))
    return out


@pytest.mark.parametrize("model", EXPERIMENTS)
@pytest.mark.parametrize("position", POSITIONS)
def test_each_position_trains_on_a_real_batch(real_batches, model, position):
    module, batch = real_batches[model, position]
    net = module.net
    assert net.input_keys == INPUT_KEYS[position] == module.input_keys
    assert net.sensor_input_keys == SENSOR_KEYS[position]
    module.train()
    loss = torch.nn.functional.mse_loss(module(batch), batch["gaze_cm"])
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    net.eval()
    sensor = net.sensor_net()
    with torch.no_grad():
        out = net(*[batch[k] for k in net.input_keys])
        sensed = sensor(*[batch[k] for k in sensor.input_keys])
    head = net.host_head()
    if position == "late":
        assert sensed.shape == (len(out), net.feature_dim)
        assert isinstance(head, LateHead)  # the default: the box modulates the features
        assert all(isinstance(m, (torch.nn.Linear, torch.nn.ReLU))
                   for m in head.mlp)
        with torch.no_grad():
            again = head(torch.cat((sensed, batch["face_box"]), dim=1))
        assert torch.equal(out, again)  # bit for bit
    else:
        assert head is None and torch.equal(sensed, out)


@pytest.mark.parametrize("model", EXPERIMENTS)
def test_the_position_changes_the_prediction(real_batches, model):
    """The face box / frame coordinates reach the output: moving the box moves the gaze."""
    module, batch = real_batches[model, "late"]
    net = module.net.eval()
    with torch.no_grad():
        moved = batch["face_box"].flip(0)
        assert not torch.equal(net(batch["face"], batch["face_box"]), net(batch["face"], moved))


@pytest.mark.parametrize("model", EXPERIMENTS)
@pytest.mark.parametrize("position", POSITIONS)
def test_qat_wrap_quantizes_the_sensor_part_and_keeps_the_head_float(real_batches, model,
                                                                     position):
    module, batch = real_batches[model, position]
    float_net = module.net.eval()
    q = BrevitasNet(float_net)
    inputs = [batch[k] for k in q.input_keys]
    calibrate(q, [inputs], forward=lambda m, b: m(*b))
    assert tuple(q.input_quant) == SENSOR_KEYS[position]
    q.train()
    torch.nn.functional.mse_loss(q(*inputs), batch["gaze_cm"]).backward()
    q.eval()
    with torch.no_grad():
        out = q(*inputs)
        sensed = q.sensor_net()(*[batch[k] for k in SENSOR_KEYS[position]])
        float_out = float_net(*inputs)
    assert out.shape == float_out.shape
    head = q.host_head()
    if position == "late":
        assert isinstance(head, LateHead)
        assert all(type(m) in (torch.nn.Linear, torch.nn.ReLU) for m in head.mlp)
        with torch.no_grad():
            assert torch.equal(out, head(torch.cat((sensed, batch["face_box"]), dim=1)))
    else:
        assert head is None and torch.equal(out, sensed)


@pytest.mark.parametrize("quantized", [False, True], ids=["float", "qat"])
@pytest.mark.parametrize("position", POSITIONS)
def test_onnx_export_of_each_position_matches_pytorch(real_batches, tmp_path, position,
                                                      quantized):
    module, batch = real_batches["tinytracker", position]
    net = module.net.eval()
    if quantized:
        net = BrevitasNet(net)
        calibrate(net, [[batch[k] for k in net.input_keys]], forward=lambda m, b: m(*b))
        net.eval()
    path = export_onnx(net, tmp_path / "model.onnx", module.hparams["input_spec"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(INPUT_KEYS[position])
    feed = {k: batch[k].numpy() for k in net.input_keys}
    with torch.no_grad():
        expected = net(*[batch[k] for k in net.input_keys]).numpy()
    (got,) = session.run(None, feed)
    np.testing.assert_allclose(got, expected, atol=1e-4 if not quantized else 0.05)


# ----------------------------------------------------------------------------- entry point
@pytest.mark.slow
@pytest.mark.parametrize("position", POSITIONS)
def test_fast_dev_run_of_each_position(tmp_path, cache_dir, position):
    run_module("tinytracker.train", *SMALL_DATA, f"model.position={position}",
               f"out_dir={tmp_path}", "trainer.fast_dev_run=true", "logger=csv")
    metrics = read_metrics(tmp_path)
    assert np.isfinite(metrics["test/error_cm"])
