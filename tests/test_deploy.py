"""The camera side (``tinytracker.deploy``): ROI arithmetic, the ISP emulation, the output
tensor, the host head, ``deploy.json``, and the Pi program's shape. Quick tier: no training.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import logging
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from tinytracker.checksum import BLOCK_BYTES, file_sha256
from tinytracker.data.inputs import crop_boxes
from tinytracker.deploy import camera, decode, pi
from tinytracker.deploy.head import (
    HeadError,
    check_checkpoint,
    layers_from_sequential,
    layers_from_state_dict,
    load_head,
    save_head,
)
from tinytracker.deploy.manifest import (
    FORMAT_VERSION,
    HeadRef,
    InputSpec,
    Manifest,
    ManifestError,
    OutputSpec,
    RoiSpec,
    manifest_for_export,
    read_manifest,
    write_manifest,
)
from tinytracker.deploy.roi import (
    SENSOR_SIZE,
    IspNorm,
    Roi,
    RoiError,
    RoiRule,
    emulate_isp,
    face_roi,
    fit_to_frame,
    full_frame_roi,
    isp_quantise,
    normalised_box,
    sensor_to_stream,
    stream_to_sensor,
    training_crop,
)

FRAME = (640, 480)
SHA_A = "a" * 64
SHA_B = "b" * 64


# ---------------------------------------------------------------- ROI arithmetic


def test_training_crop_is_the_data_pipelines_face_crop():
    # prepareDataset.py: truncate, then one pixel up-left and one wider and taller
    known = {(100, 200, 50, 50): (99, 199, 51, 51), (10.7, 3.2, 99.9, 80.1): (9, 2, 100, 81),
             (0, 0, 1, 1): (-1, -1, 2, 2), (-5, 7, 30, 31): (-6, 6, 31, 32)}
    for box, crop in known.items():
        assert training_crop(box) == crop
        assert tuple(crop_boxes(box, None, None)["face"]) == crop  # the crop prepare stores


def test_face_roi_on_known_boxes():
    rule = RoiRule()
    # square box: the training crop itself (one pixel up-left, one wider/taller)
    assert face_roi((100, 200, 50, 50), rule, FRAME) == Roi((99, 199, 51, 51), FRAME)
    # tall box: squared about its centre (119.5, 129.5) to side 61
    assert face_roi((100, 100, 40, 60), rule, FRAME).rect == (89, 99, 61, 61)
    # square=False keeps the crop's own shape
    assert face_roi((100, 100, 40, 60), replace(rule, square=False), FRAME).rect == (99, 99, 41, 61)
    # scale 2 about the centre (124, 124): side 100
    assert face_roi((100, 100, 49, 49), replace(rule, scale=2.0), FRAME).rect == (74, 74, 100, 100)
    # on the 4056x3040 sensor by default
    assert face_roi((2000, 1500, 401, 401), rule).frame_size == SENSOR_SIZE


@pytest.mark.parametrize("box, side, clipped", [
    ((-21, 100, 50, 50), "left", (0, 99, 29, 51)),
    ((100, -21, 50, 50), "top", (99, 0, 51, 29)),
    ((600, 100, 50, 50), "right", (599, 99, 41, 51)),
    ((100, 450, 50, 50), "bottom", (99, 449, 51, 31)),
])
def test_roi_crossing_an_edge_is_clipped_with_a_message_or_refused(box, side, clipped, caplog):
    with caplog.at_level(logging.WARNING, logger="tinytracker.deploy.roi"):
        roi = face_roi(box, RoiRule(edge="clip"), FRAME)
    assert roi.rect == clipped and roi.clipped
    x, y, w, h = roi.rect
    assert x >= 0 and y >= 0 and x + w <= FRAME[0] and y + h <= FRAME[1]
    assert f"crosses the {side} edge" in caplog.text and "clipped to" in caplog.text
    with pytest.raises(RoiError, match=f"crosses the {side} edge.*roi.edge='refuse'"):
        face_roi(box, RoiRule(edge="refuse"), FRAME)


def test_corner_crossing_names_both_edges():
    roi = face_roi((620, 460, 50, 50), RoiRule(), FRAME)
    assert roi.rect == (619, 459, 21, 21)
    with pytest.raises(RoiError, match="right/bottom"):
        face_roi((620, 460, 50, 50), RoiRule(edge="refuse"), FRAME)


@pytest.mark.parametrize("box", [(700, 100, 50, 50), (100, 500, 50, 50), (-100, -100, 50, 50),
                                 (-60, 10, 50, 50)])
@pytest.mark.parametrize("edge", ["clip", "refuse"])
def test_roi_wholly_outside_the_frame_is_refused(box, edge):
    with pytest.raises(RoiError, match="outside the 640x480 frame"):
        face_roi(box, RoiRule(edge=edge), FRAME)


def test_bad_rules_and_empty_boxes_are_refused():
    with pytest.raises(RoiError, match="roi.edge"):
        RoiRule(edge="wrap")
    with pytest.raises(RoiError, match="roi.mode"):
        RoiRule(mode="eyes")
    with pytest.raises(RoiError, match="roi.scale"):
        RoiRule(scale=0.0)
    with pytest.raises(RoiError, match="no area"):
        face_roi((10, 10, -1, 5), RoiRule(), FRAME)
    with pytest.raises(RoiError, match="outside"):
        fit_to_frame((10, 10, 0, 5), FRAME)


def test_full_frame_mode_ignores_the_box():
    assert face_roi((1, 2, 3, 4), RoiRule(mode="full_frame")) == full_frame_roi()
    assert full_frame_roi().rect == (0, 0, 4056, 3040)


def test_stream_and_sensor_coordinates():
    # a 640x480 stream of the whole 4056x3040 sensor: 6.3375 sensor pixels per stream pixel
    assert stream_to_sensor((64, 48, 64, 48), (640, 480)) == pytest.approx(
        (405.6, 304.0, 405.6, 304.0))
    # a stream of a scaler crop: translate, then scale by crop / stream (2x here)
    crop = (100, 200, 2028, 1520)
    assert stream_to_sensor((10, 20, 30, 40), (1014, 760), crop) == (120, 240, 60, 80)
    assert sensor_to_stream((120, 240, 60, 80), (1014, 760), crop) == (10, 20, 30, 40)


def test_normalised_box_is_in_frame_fractions():
    np.testing.assert_array_equal(normalised_box(Roi((0, 0, 2028, 1520), SENSOR_SIZE)),
                                  np.array([0, 0, 0.5, 0.5], dtype=np.float32))
    np.testing.assert_allclose(normalised_box(Roi((160, 120, 320, 240), FRAME)),
                               [0.25, 0.25, 0.75, 0.75])


# ---------------------------------------------------------------- the ISP's crop + scale


def gradient_frame(width: int = 40, height: int = 30) -> np.ndarray:
    """R = 6 x, G = 8 y, B = 50: uint8 RGB."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([6 * xs, 8 * ys, np.full_like(xs, 50)], axis=-1).astype(np.uint8)


def test_emulate_isp_shrinks_by_area_averaging_a_gradient():
    frame = gradient_frame()
    roi = Roi((8, 6, 16, 16), (40, 30))
    out = emulate_isp(frame, roi, (8, 8), "RGB")
    assert out.shape == (3, 8, 8) and out.dtype == np.uint8
    # each output pixel is the mean of a 2x2 block: R = 6 * (8 + 2j + 0.5), G = 8 * (6 + 2i + .5)
    j = np.arange(8)
    np.testing.assert_array_equal(out[0], np.broadcast_to(51 + 12 * j, (8, 8)))
    np.testing.assert_array_equal(out[1], np.broadcast_to((52 + 16 * j)[:, None], (8, 8)))
    np.testing.assert_array_equal(out[2], 50)


def test_emulate_isp_shrink_averages_every_pixel():
    # one bright column in four: the area filter sees all of them (200 / 4); bilinear or
    # nearest sampling at 4x would sample between them and see 0
    frame = np.zeros((16, 16, 3), dtype=np.uint8)
    frame[:, ::4] = 200
    out = emulate_isp(frame, Roi((0, 0, 16, 16), (16, 16)), (4, 4), "RGB")
    np.testing.assert_array_equal(out, 50)


def test_emulate_isp_stretches_without_letterbox():
    # a 16x8 ROI to an 8x8 input: columns averaged in pairs, rows kept, nothing padded
    out = emulate_isp(gradient_frame(), Roi((8, 6, 16, 8), (40, 30)), (8, 8), "RGB")
    j = np.arange(8)
    np.testing.assert_array_equal(out[0], np.broadcast_to(51 + 12 * j, (8, 8)))
    np.testing.assert_array_equal(out[1], np.broadcast_to((48 + 8 * j)[:, None], (8, 8)))


def test_emulate_isp_enlarges_bilinearly():
    # a 4-pixel-wide ROI to 8: half-pixel centres, x_src = (x + 0.5) / 2 - 0.5, edges clamped
    out = emulate_isp(gradient_frame(), Roi((8, 6, 4, 4), (40, 30)), (8, 8), "RGB")
    x_src = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    expected = 6 * (8 + x_src)
    assert np.abs(out[0].astype(float) - expected[None]).max() <= 0.5 + 1e-9


def test_emulate_isp_formats():
    frame = gradient_frame()
    roi = Roi((8, 6, 16, 16), (40, 30))
    rgb = emulate_isp(frame, roi, (8, 8), "RGB")
    np.testing.assert_array_equal(emulate_isp(frame, roi, (8, 8), "BGR"), rgb[::-1])
    grey = emulate_isp(frame, roi, (8, 8), "Y")
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]  # ITU-R BT.601
    assert grey.shape == (1, 8, 8) and np.abs(grey[0] - luma).max() <= 1


def test_emulate_isp_refuses_what_the_sensor_cannot_do():
    frame = gradient_frame()
    with pytest.raises(RoiError, match="not inside"):  # numpy would wrap x=-2
        emulate_isp(frame, Roi((-2, 0, 8, 8), (40, 30)), (4, 4))
    with pytest.raises(RoiError, match="belongs to a 640x480 frame"):
        emulate_isp(frame, Roi((0, 0, 8, 8), FRAME), (4, 4))
    with pytest.raises(RoiError, match="input format"):
        emulate_isp(frame, Roi((0, 0, 8, 8), (40, 30)), (4, 4), "BayerRGB")


def test_isp_quantise_default_registers_give_pixel_minus_128():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16).repeat(3, axis=0)
    codes = isp_quantise(pixels, IspNorm())
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes.astype(int), pixels.astype(int) - 128)


def test_isp_norm_for_the_models_normalisation():
    # the model sees (p/255 - 0.5) / 0.5, the tensor holds it at scale 1/128
    norm = IspNorm.for_normalisation(0.5, 0.5, 1 / 128)
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    codes = isp_quantise(pixels, norm).astype(int)
    ideal = (pixels / 255.0 - 0.5) / 0.5 * 128
    assert np.abs(codes - ideal).max() <= 1.0
    assert codes.min() == -128 and codes.max() == 127


# ---------------------------------------------------------------- output tensor

# The converter's dnnParams.xml for a two-input TinyTracker (imxconv-pt 3.19.2), trimmed.
DNN_PARAMS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<dnnParams><networks><network name="model_imx500" ordinal="0" type=""><inputTensors>
<inputTensor persistency="1" ordinal="0" name="Placeholder.input_0.uid1:0" l2Offset="7745760"
 numOfDimensions="3" bitsPerElement="8" shift="0" scale="0.0078125" format="signed"><dimensions>
<dimension size="3" serializationOrder="2" ordinal="0" padding="0"/>
<dimension size="112" serializationOrder="1" ordinal="1" padding="0"/>
<dimension size="112" serializationOrder="0" ordinal="2" padding="16"/></dimensions></inputTensor>
<inputTensor persistency="1" ordinal="1" name="Placeholder.input_1.uid2:0" l2Offset="7792864"
 numOfDimensions="3" bitsPerElement="8" shift="0" scale="0.0078125" format="signed"><dimensions>
<dimension size="2" serializationOrder="2" ordinal="0" padding="0"/>
<dimension size="112" serializationOrder="1" ordinal="1" padding="0"/>
<dimension size="112" serializationOrder="0" ordinal="2" padding="16"/></dimensions></inputTensor>
</inputTensors><outputTensors>
<outputTensor ordinal="0" name="transform-0-/body_6/layer/Gemm:0" l2Offset="7565536"
 numOfDimensions="1" bitsPerElement="8" shift="0" scale="0.03125" format="signed"><dimensions>
<dimension size="2" serializationOrder="0" ordinal="0" padding="0"/></dimensions></outputTensor>
</outputTensors></network></networks>
<l2memory totalSize="8388480" coefficientsSize="562848" reservedMemorySize="1024"
 networksRuntimeSize="260096"/></dnnParams>
"""


def test_parse_dnn_params_of_the_converter(tmp_path):
    path = tmp_path / "dnnParams.xml"
    path.write_text(DNN_PARAMS)
    params = decode.parse_dnn_params(path)
    assert [t.shape for t in params.inputs] == [(3, 112, 112), (2, 112, 112)]
    assert params.inputs[0].scale == 0.0078125 and params.inputs[0].signed
    (out,) = params.outputs
    assert out.shape == (2,) and out.scale == 0.03125 and out.code_range == (-128, 127)
    path.write_text(DNN_PARAMS.replace('shift="0" scale="0.03125"', 'shift="3" scale="0.03125"'))
    with pytest.raises(decode.DecodeError, match="shift=3"):
        decode.parse_dnn_params(path)
    path.write_text("<dnnParams/>")
    with pytest.raises(decode.DecodeError, match=str(path)):
        decode.parse_dnn_params(path)


def test_decode_round_trip_and_saturation():
    spec = decode.TensorSpec("out", (2,), 0.03125)
    gaze = np.array([[1.23, -3.56], [0.0, 3.96875], [-3.99, 2.5]], dtype=np.float32)  # in range
    codes = decode.quantise(gaze, spec)
    back = decode.from_codes(codes, spec)
    assert back.shape == (3, 2) and back.dtype == np.float32
    assert np.abs(back - gaze).max() <= spec.scale / 2
    np.testing.assert_array_equal(back[1], [0.0, 3.96875])  # on the grid: exact
    big = decode.from_codes(decode.quantise(np.array([10.0, -10.0]), spec), spec)
    np.testing.assert_array_equal(big, [[127 * 0.03125, -4.0]])  # saturates, never wraps
    with pytest.raises(decode.DecodeError, match="outside"):
        decode.from_codes(np.array([200, 0]), spec)
    with pytest.raises(decode.DecodeError, match="already dequantised"):
        decode.from_codes(np.array([0.5, 0.25]), spec)
    with pytest.raises(decode.DecodeError, match="expected 2 values"):
        decode.from_codes(np.array([1, 2, 3]), spec)


def test_from_sensor_takes_picamera2s_float_outputs():
    values = decode.from_sensor([np.array([1.5, -2.0], dtype=np.float32)], 2)
    np.testing.assert_array_equal(values, [[1.5, -2.0]])
    with pytest.raises(decode.DecodeError, match="no output tensor"):
        decode.from_sensor(None, 2)
    with pytest.raises(decode.DecodeError, match="one output tensor"):
        decode.from_sensor([np.zeros(2), np.zeros(3)], 2)
    with pytest.raises(decode.DecodeError, match="expected 64 values"):
        decode.from_sensor([np.zeros(2)], 64)


# ---------------------------------------------------------------- host head


def torch_head(feature_dim: int = 16) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(feature_dim + 4, 32), nn.ReLU(), nn.Linear(32, 8), nn.ReLU(),
                         nn.Linear(8, 2))


def test_head_file_round_trip_and_parity_with_torch(tmp_path):
    module = torch_head().eval()
    weights, biases, relu = layers_from_sequential(module)
    path = save_head(tmp_path / "head.bin", weights, biases, SHA_A, relu)
    assert path == tmp_path / "head.bin" and path.is_file()  # no ".npz" appended
    head = load_head(path)
    assert head.ckpt_sha256 == SHA_A and head.feature_dim == 16 and relu == [0, 1]
    assert head.layers() == ["linear", "relu", "linear", "relu", "linear"]
    for saved, loaded in zip(weights, head.weights, strict=True):
        np.testing.assert_array_equal(loaded, saved.astype(np.float32))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 16)).astype(np.float32)
    box = rng.uniform(size=(50, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(np.concatenate([features, box], 1))).numpy()
    got = head.apply(features, box)
    assert got.shape == (50, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert np.abs(expected).max() > 0.01  # a real signal, not all zeros


def test_film_head_file_matches_torch_late_head(tmp_path):
    """The default late head (LateHead: the box modulates the features) runs in numpy as in
    PyTorch, and a head file without film (format 1's layout) still reads as a plain MLP."""
    from tinytracker.deploy.head import layers_from_module
    from tinytracker.models.regressor import LateHead

    torch.manual_seed(0)
    module = LateHead(16, 32).eval()
    with torch.no_grad():  # zero-initialised film: give it weights that matter
        module.film.weight.normal_(0, 0.5)
        module.film.bias.normal_(0, 0.5)
    weights, biases, relu, film = layers_from_module(module)
    assert film is not None and film[0].shape == (32, 4)
    head = load_head(save_head(tmp_path / "head.npz", weights, biases, SHA_A, relu, film))
    assert head.film_weight is not None and head.layers() == ["linear", "relu", "linear"]
    rng = np.random.default_rng(1)
    features = rng.normal(size=(40, 16)).astype(np.float32)
    box = rng.uniform(size=(40, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(np.concatenate([features, box], 1))).numpy()
    np.testing.assert_allclose(head.apply(features, box), expected, atol=1e-5, rtol=0)
    # without the film arrays the same MLP gives other numbers: the modulation is applied
    plain = load_head(save_head(tmp_path / "plain.npz", weights, biases, SHA_A, relu))
    assert plain.film_weight is None
    assert np.abs(plain.apply(features, box) - expected).max() > 0.01
    # a header that promises film but lacks its arrays is refused by name
    with np.load(tmp_path / "head.npz") as data:
        arrays = {k: data[k] for k in data.files if k != "film_bias"}
    with open(tmp_path / "broken.npz", "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(HeadError, match="film_bias"):
        load_head(tmp_path / "broken.npz")


def test_head_from_state_dict_matches_the_module(tmp_path):
    module = torch_head().eval()
    from_sd = layers_from_state_dict({f"head.{k}": v for k, v in module.state_dict().items()},
                                     prefix="head.")
    from_module = layers_from_sequential(module)
    for a, b in zip(from_sd[0] + from_sd[1], from_module[0] + from_module[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert from_sd[2] == from_module[2]


def test_head_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(HeadError, match="Tanh"):
        layers_from_sequential(nn.Sequential(nn.Linear(8, 2), nn.Tanh()))
    with pytest.raises(HeadError, match="XCam, YCam"):
        save_head(tmp_path / "h.npz", [np.zeros((3, 8))], [np.zeros(3)], SHA_A)
    head = load_head(save_head(tmp_path / "h.npz", [np.zeros((2, 8))], [np.zeros(2)], SHA_A))
    with pytest.raises(HeadError, match=r"features \(N, 4\)"):
        head.apply(np.zeros((1, 5)), np.zeros((1, 4)))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(HeadError, match="bad.npz"):
        load_head(tmp_path / "bad.npz")


def test_head_of_another_checkpoint_is_refused(tmp_path):
    manifest = features_manifest(ckpt=SHA_A)
    write_manifest(tmp_path / "deploy.json", manifest)
    save_head(tmp_path / "head.npz", [np.zeros((2, 7))], [np.zeros(2)], SHA_B)
    with pytest.raises(HeadError) as err:
        camera.load(tmp_path / "deploy.json")
    message = str(err.value)
    for name in (SHA_A, SHA_B, str(tmp_path / "head.npz"), str(tmp_path / "deploy.json")):
        assert name in message
    save_head(tmp_path / "head.npz", [np.zeros((2, 9))], [np.zeros(2)], SHA_A)
    with pytest.raises(HeadError, match="takes 5 features.*output.size=3"):
        camera.load(tmp_path / "deploy.json")
    save_head(tmp_path / "head.npz", [np.zeros((2, 7))], [np.zeros(2)], SHA_A)
    loaded, head = camera.load(tmp_path / "deploy.json")
    assert loaded == manifest and head is not None
    check_checkpoint(head, SHA_A, "h", "m")


# ---------------------------------------------------------------- deploy.json


def features_manifest(ckpt: str = SHA_A, features: int = 3) -> Manifest:
    return Manifest(
        input=InputSpec("RGB", 8, 8, scale=1 / 128, mean=0.5, std=0.5),
        roi=RoiSpec(),
        output=OutputSpec("features", features, scale=0.03125, units="1"),
        head=HeadRef("head.npz", "see tinytracker.deploy.head"),
        ckpt_sha256=ckpt)


def test_manifest_round_trip(tmp_path):
    manifest = features_manifest()
    path = write_manifest(tmp_path / "deploy.json", manifest)
    assert read_manifest(path) == manifest
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    assert manifest.head_path(path) == tmp_path / "head.npz"
    gaze = replace(manifest, output=OutputSpec("gaze_cm", 2, 0.03125), head=None)
    assert read_manifest(write_manifest(tmp_path / "g.json", gaze)) == gaze


def edited(tmp_path, change) -> Path:
    data = asdict(features_manifest())
    change(data)
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("version, age", [(0, "older"), (FORMAT_VERSION + 1, "newer"),
                                          ("1", "unknown"), (None, "unknown")])
def test_manifest_of_another_format_version_is_refused(tmp_path, version, age):
    path = edited(tmp_path, lambda d: d.update(format_version=version))
    with pytest.raises(ManifestError, match=rf"{path}: key 'format_version' .*\({age}\)"):
        read_manifest(path)


def test_manifest_missing_unknown_or_mistyped_keys_are_named(tmp_path):
    path = edited(tmp_path, lambda d: d["output"].pop("scale"))
    with pytest.raises(ManifestError, match=rf"{path}: missing key 'output.scale'"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d.pop("ckpt_sha256"))
    with pytest.raises(ManifestError, match="missing key 'ckpt_sha256'"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d["roi"].update(margin=2))
    with pytest.raises(ManifestError, match="roi.margin"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d["input"].update(width="112"))
    with pytest.raises(ManifestError, match="key 'input.width': expected int"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d["input"].update(format="Bayer"))
    with pytest.raises(ManifestError, match="key 'input.format'"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d.update(head=None))
    with pytest.raises(ManifestError, match="key 'head'"):
        read_manifest(path)
    path = edited(tmp_path, lambda d: d["roi"].update(edge="wrap"))
    with pytest.raises(ManifestError, match="key 'roi'.*roi.edge"):
        read_manifest(path)


def one_input_dnn_params() -> str:
    """DNN_PARAMS without its second (grid-embedding) input tensor."""
    start = DNN_PARAMS.index('<inputTensor persistency="1" ordinal="1"')
    end = DNN_PARAMS.index("</inputTensor>", start) + len("</inputTensor>")
    return DNN_PARAMS[:start] + DNN_PARAMS[end:]


def test_manifest_for_export_from_the_converters_dnn_params(tmp_path):
    path = tmp_path / "dnnParams.xml"
    path.write_text(DNN_PARAMS)
    kwargs = dict(input_format="RGB", mean=0.5, std=0.5, roi=RoiSpec(), output_kind="gaze_cm",
                  head_file=None, ckpt_sha256=SHA_A)
    with pytest.raises(ManifestError, match=rf"{path} lists 2 input tensors.*exactly one"):
        manifest_for_export(decode.parse_dnn_params(path), path, **kwargs)
    path.write_text(one_input_dnn_params())
    manifest = manifest_for_export(decode.parse_dnn_params(path), path, **kwargs)
    assert (manifest.input.width, manifest.input.height, manifest.input.scale) == (
        112, 112, 0.0078125)
    assert manifest.output == OutputSpec("gaze_cm", 2, 0.03125, 0, "cm")
    with pytest.raises(ManifestError, match=r"needs \(1, height, width\)"):
        manifest_for_export(decode.parse_dnn_params(path), path, **{**kwargs, "input_format": "Y"})
    features = manifest_for_export(decode.parse_dnn_params(path), path,
                                   **{**kwargs, "output_kind": "features",
                                      "head_file": "head.npz"})
    assert features.output.units == "1" and features.head.file == "head.npz"
    with pytest.raises(ManifestError, match="key 'head'"):
        manifest_for_export(decode.parse_dnn_params(path), path,
                            **{**kwargs, "output_kind": "features"})
    assert read_manifest(write_manifest(tmp_path / "deploy.json", manifest)) == manifest


def test_sensor_mismatches_compare_the_rpk_with_deploy_json():
    manifest = features_manifest()
    norm = manifest.input.isp_norm()
    # picamera2's IMX500.config["input_tensor"]: lists, div_shift a scalar
    matching = {"input_format": "RGB", "norm_val": list(norm.norm_val),
                "norm_shift": list(norm.norm_shift), "div_val": list(norm.div_val),
                "div_shift": norm.div_shift, "width": 8, "height": 8}
    assert camera.sensor_mismatches(matching, (8, 8), manifest) == []
    found = camera.sensor_mismatches({**matching, "input_format": "BGR",
                                      "div_val": [1024, 1024, 1024]}, (112, 112), manifest)
    assert len(found) == 3
    assert "input format is BGR" in found[0] and "(112, 112)" in found[1] and "div_val" in found[2]


def test_file_sha256(tmp_path):
    (tmp_path / "ckpt").write_bytes(b"abc")
    assert file_sha256(tmp_path / "ckpt") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")  # FIPS 180-2
    # across the 1 MiB read blocks: the digest of the whole file, not of its first block
    data = bytes(range(256)) * (3 * BLOCK_BYTES // 256 + 7)
    (tmp_path / "big").write_bytes(data)
    assert file_sha256(tmp_path / "big") == hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the whole path, emulated


def channel_means(x: np.ndarray) -> np.ndarray:
    """A stand-in sensor graph: the mean of each input channel, (N, C, H, W) -> (N, C)."""
    return x.reshape(len(x), x.shape[1], -1).mean(axis=2)


def test_emulate_frame_runs_the_camera_path_by_hand_numbers(tmp_path):
    write_manifest(tmp_path / "deploy.json", features_manifest())
    # out0 = f0 + x0 of the box, out1 = y1 of the box
    weight = np.zeros((2, 7))
    weight[0, 0], weight[0, 3], weight[1, 6] = 1.0, 1.0, 1.0
    save_head(tmp_path / "head.npz", [weight], [np.zeros(2)], SHA_A)
    manifest, head = camera.load(tmp_path / "deploy.json")
    frame = np.full((480, 640, 3), 255, dtype=np.uint8)
    gaze, roi = camera.emulate_frame(frame, (159, 119, 160, 160), manifest, head, channel_means)
    assert roi.rect == (158, 118, 161, 161) and roi.frame_size == FRAME
    # white -> code 127 -> 127/128 on the input; the mean quantised at 1/32 -> 1.0
    x0, y1 = 158 / 640, (118 + 161) / 480
    np.testing.assert_allclose(gaze, [[1.0 + x0, y1]], atol=1e-6)


def test_emulate_frame_with_gaze_output_and_full_frame():
    manifest = replace(features_manifest(), output=OutputSpec("gaze_cm", 2, 0.03125), head=None,
                       roi=RoiSpec(mode="full_frame"))
    frame = np.zeros((30, 40, 3), dtype=np.uint8)
    frame[:, :30] = 255  # 6 of the 8 input columns white (code 127), 2 black (code -128)

    def first_two(x: np.ndarray) -> np.ndarray:
        return channel_means(x)[:, :2]

    gaze, roi = camera.emulate_frame(frame, None, manifest, None, first_two)
    assert roi.rect == (0, 0, 40, 30)
    expected = round((6 * 127 - 2 * 128) / 8 / 128 / 0.03125) * 0.03125
    assert expected == 0.5
    np.testing.assert_allclose(gaze, [[expected, expected]])
    with pytest.raises(RoiError, match="no face"):
        camera.emulate_frame(frame, None, replace(manifest, roi=RoiSpec()), None, first_two)


# ---------------------------------------------------------------- the Pi program


def calls(tree: ast.AST) -> set[str]:
    """``module.function`` names called in ``tree``."""
    return {f"{node.func.value.id}.{node.func.attr}" for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)}


def without_annotations(tree: ast.AST) -> ast.AST:
    """``tree`` with type hints removed (``Sequence[str] | None`` is a BinOp, not arithmetic)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            node.returns = None
        elif isinstance(node, ast.arg):
            node.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant(None)
    return tree


def test_pi_program_is_a_thin_shell_over_the_shared_functions():
    tree = without_annotations(ast.parse(Path(pi.__file__).read_text()))
    arithmetic = [f"line {n.lineno}: {ast.unparse(n)}" for n in ast.walk(tree)
                  if isinstance(n, ast.BinOp | ast.AugAssign)
                  or isinstance(n, ast.UnaryOp) and not isinstance(n.op, ast.Not)]
    assert not arithmetic, f"pi.py computes on its own: {arithmetic}"
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "tinytracker.deploy" for alias in node.names}
    assert {"camera", "decode", "roi"} <= imported
    shared = {"camera.roi_for_face", "camera.gaze_cm"}
    assert shared | {"decode.from_sensor", "imx500.set_inference_roi_abs",
                     "imx500.get_outputs", "imx500.get_kpi_info", "camera.load"} <= calls(tree)
    # the emulation goes through the very same ROI and head steps
    emulation = ast.parse(inspect.getsource(camera.emulate_frame))
    called = {name.split(".")[-1] for name in calls(emulation)} | {
        n.func.id for n in ast.walk(emulation) if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)}
    assert {"roi_for_face", "gaze_cm"} <= called


def test_pi_side_imports_without_torch():
    # the Pi has numpy, OpenCV and picamera2, not PyTorch
    code = ("import sys, tinytracker.deploy.pi, tinytracker.deploy.camera; "
            "print(sorted(m for m in ('torch', 'albumentations', 'onnxruntime') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_pi_program_without_picamera2_says_so(caplog):
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("picamera2 is installed: this is a Pi")
    with caplog.at_level(logging.ERROR, logger="tinytracker.deploy.pi"):
        assert pi.main(["network.rpk", "deploy.json"]) == 2
    assert "picamera2 is not installed" in caplog.text


def test_stream_rgb_swaps_picamera2s_bgr_order():
    frame = np.zeros((2, 2, 3), dtype=np.uint8)
    frame[..., 0] = 10  # B in memory for RGB888
    rgb = camera.stream_rgb(frame)
    assert rgb[0, 0].tolist() == [0, 0, 10]
    four = np.dstack([frame, np.full((2, 2), 99, dtype=np.uint8)])  # XRGB8888
    assert camera.stream_rgb(four)[0, 0].tolist() == [0, 0, 10]
    assert cv2.cvtColor(frame, cv2.COLOR_BGR2RGB).tolist() == rgb.tolist()


def test_emulated_late_model_with_onnx_runtime_matches_torch(tmp_path):
    """A real sensor graph (torch -> ONNX -> ONNX Runtime) and the numpy head reproduce the
    PyTorch features + head on the same camera input, up to the output tensor's int8 grid."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    sensor = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(4, 3)).eval()
    module = nn.Sequential(nn.Linear(3 + 4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    onnx_path = tmp_path / "sensor.onnx"
    torch.onnx.export(sensor, torch.zeros(1, 3, 8, 8), str(onnx_path), input_names=["face"],
                      dynamo=False)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def graph(x: np.ndarray) -> np.ndarray:
        return session.run(None, {"face": x.astype(np.float32)})[0]

    write_manifest(tmp_path / "deploy.json", features_manifest())
    save_head(tmp_path / "head.npz", *layers_from_sequential(module)[:2], SHA_A)
    manifest, head = camera.load(tmp_path / "deploy.json")
    frame = gradient_frame(64, 48)
    gaze, roi = camera.emulate_frame(frame, (20, 10, 24, 24), manifest, head, graph)

    x = torch.from_numpy(camera.sensor_input(frame, roi, manifest))
    with torch.no_grad():
        features = sensor(x)
        step = manifest.output.scale
        on_grid = torch.round(features / step) * step  # the int8 output tensor
        box = torch.from_numpy(normalised_box(roi))[None]
        expected = module(torch.cat([on_grid, box], dim=1)).numpy()
    assert np.abs(features.numpy()).max() > step  # the features are not all rounded to 0
    np.testing.assert_allclose(gaze, expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the export's camera files


class _LateNet(nn.Module):
    """The interface of ``model.position=late``: a sensor part ending in features, a host head
    on concat(features, face_box)."""

    input_keys = ("face", "face_box")
    sensor_input_keys = ("face",)

    def __init__(self) -> None:
        super().__init__()
        self.sensor = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(),
                                    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        self.head = nn.Sequential(nn.Linear(2 + 4, 8), nn.ReLU(), nn.Linear(8, 2))

    def sensor_net(self) -> nn.Module:
        return self.sensor

    def host_head(self) -> nn.Sequential:
        return self.head

    def forward(self, face: torch.Tensor, face_box: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.sensor(face), face_box], dim=1))


def test_export_writes_the_late_nets_head_and_a_features_manifest(tmp_path):
    from tinytracker.export.sensor_part import roi_spec, sensor_part, write_camera_files

    torch.manual_seed(0)
    net = _LateNet().eval()
    ckpt = tmp_path / "late.ckpt"
    ckpt.write_bytes(b"a checkpoint")
    part = sensor_part(net, str(ckpt))
    assert part.net is net.sensor and part.input_keys == ("face",) and part.host_head is net.head
    assert roi_spec(part) == RoiSpec(mode="face")
    dnn = tmp_path / "dnnParams.xml"
    dnn.write_text(one_input_dnn_params())
    out = tmp_path / "imx500"
    out.mkdir()
    path, manifest, head = write_camera_files(part, dnn, {"grey": False, "mean": 0.5,
                                                          "std": 0.5}, str(ckpt), out)
    assert path == out / "deploy.json" and (out / "head.npz").is_file()
    assert manifest.output.kind == "features" and manifest.head.file == "head.npz"
    assert manifest.ckpt_sha256 == file_sha256(ckpt) == head.ckpt_sha256
    loaded, loaded_head = camera.load(path)  # what the Pi loads, hash checked
    assert loaded == manifest and loaded_head.layers() == ["linear", "relu", "linear"]
    # the numpy head computes the torch model from the sensor's features and the box
    face, box = torch.randn(5, 3, 16, 16), torch.rand(5, 4)
    with torch.no_grad():
        features = net.sensor_net()(face)
        expected = net(face, box).numpy()
    np.testing.assert_allclose(loaded_head.apply(features.numpy(), box.numpy()), expected,
                               atol=1e-5)


def test_export_names_the_deployable_choices_for_a_two_input_net():
    from tinytracker.export.errors import ExportError
    from tinytracker.export.sensor_part import sensor_part
    from tinytracker.models import TinyTracker

    with pytest.raises(ExportError, match=r"2 input tensors on the sensor \(face, "
                                          r"grid_embedding\).*model.position=none\|late\|frame"):
        sensor_part(TinyTracker(grid_embedding=True), "two.ckpt")
    part = sensor_part(TinyTracker(grid_embedding=False), "one.ckpt")
    assert part.input_keys == ("face",) and part.host_head is None
