"""The camera side's steps, shared by the Pi program and by its emulation on a computer.

On the Pi (:mod:`tinytracker.deploy.pi`)::

    roi = roi_for_face(face_box_on_stream, stream_size, scaler_crop, manifest)
    imx500.set_inference_roi_abs(roi.as_tuple())
    values = decode.from_sensor(imx500.get_outputs(metadata), manifest.output.size)
    gaze = gaze_cm(values, roi, manifest, head)

Emulated (:func:`emulate_frame`): the same ROI and :func:`gaze_cm`, with the sensor replaced
by :func:`~tinytracker.deploy.roi.emulate_isp` -> :func:`~tinytracker.deploy.roi.isp_quantise`
-> the sensor graph (e.g. the MCT-quantized ONNX in ONNX Runtime) -> the output tensor's int8
codes (:func:`~tinytracker.deploy.decode.quantise`, as the sensor sends them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from tinytracker.deploy import decode, roi
from tinytracker.deploy.head import BOX_DIM, Head, HeadError, check_checkpoint, load_head
from tinytracker.deploy.manifest import Manifest, read_manifest

# (N, C, H, W) float32 input, as the exported sensor graph takes it -> (N, D) float32 output
SensorGraph = Callable[[np.ndarray], np.ndarray]


def load(manifest_path: Path | str) -> tuple[Manifest, Head | None]:
    """``deploy.json`` and its head file, refusing a head of another checkpoint."""
    manifest = read_manifest(manifest_path)
    head_path = manifest.head_path(manifest_path)
    if head_path is None:
        return manifest, None
    head = load_head(head_path)
    check_checkpoint(head, manifest.ckpt_sha256, head_path, manifest_path)
    if head.feature_dim != manifest.output.size:
        raise HeadError(f"the head {head_path} takes {head.feature_dim} features but "
                        f"{manifest_path} says the sensor sends output.size="
                        f"{manifest.output.size}")
    return manifest, head


def sensor_mismatches(input_tensor: dict, input_size: Sequence[int] | None,
                      manifest: Manifest) -> list[str]:
    """What the loaded ``.rpk`` says about its input tensor that ``deploy.json`` contradicts.

    ``input_tensor``: picamera2's ``IMX500.config["input_tensor"]`` (``input_format``,
    ``norm_val``, ``norm_shift``, ``div_val``, ``div_shift``, read from the ``.rpk``'s
    ``network_info.txt``); ``input_size``: ``IMX500.get_input_size()`` ``(width, height)``.
    An empty list: the emulation's input matches the camera's.
    """
    spec = manifest.input
    found: list[str] = []
    fmt = input_tensor.get("input_format")
    if fmt is not None and fmt != spec.format:
        found.append(f"the network's input format is {fmt}, deploy.json says {spec.format}")
    if input_size is not None and tuple(input_size) != (spec.width, spec.height):
        found.append(f"the network's input is {tuple(input_size)} (width, height), deploy.json "
                     f"says {(spec.width, spec.height)}")
    if fmt in ("RGB", "BGR"):  # picamera2 reads the registers for colour inputs only
        expected = asdict(spec.isp_norm())
        for key, value in expected.items():
            got = input_tensor.get(key)
            if got is not None and _as_tuple(got) != _as_tuple(value):
                found.append(f"ISP register {key} is {got}, the emulation assumes {value}")
    return found


def _as_tuple(value: object) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


def roi_for_face(face_box: Sequence[float] | None, stream_size: tuple[int, int],
                 scaler_crop: Sequence[int] | None, manifest: Manifest) -> roi.Roi:
    """The sensor ROI for a face box found on the host stream (``None``: full frame only
    for ``roi.mode == "full_frame"``; a ``face`` rule without a face raises)."""
    rule = manifest.roi.rule()
    if rule.mode == "full_frame":
        return roi.full_frame_roi(manifest.roi.sensor_size)
    if face_box is None:
        raise roi.RoiError("no face on the host stream: no ROI for this frame")
    box = roi.stream_to_sensor(face_box, stream_size, scaler_crop)
    return roi.face_roi(box, rule, manifest.roi.sensor_size)


def gaze_cm(values: np.ndarray, frame_roi: roi.Roi, manifest: Manifest,
            head: Head | None) -> np.ndarray:
    """Decoded output values ``(N, D)`` and the ROI they were computed on -> ``(N, 2)`` cm."""
    if manifest.output.kind == "gaze_cm":
        return np.asarray(values, dtype=np.float32)
    if head is None:
        raise ValueError("output.kind='features' needs the head file deploy.json names")
    box = np.broadcast_to(roi.normalised_box(frame_roi), (len(values), BOX_DIM))
    return head.apply(values, box)


def stream_rgb(frame: np.ndarray) -> np.ndarray:
    """picamera2's ``RGB888`` stream array (B, G, R in memory, libcamera's naming) -> RGB."""
    return np.ascontiguousarray(frame[..., 2::-1])


def sensor_input(frame: np.ndarray, frame_roi: roi.Roi, manifest: Manifest) -> np.ndarray:
    """What the sensor graph sees for ``frame``: float32 ``(1, C, H, W)`` = int8 code * scale."""
    spec = manifest.input
    image = roi.emulate_isp(frame, frame_roi, (spec.width, spec.height), spec.format)
    codes = roi.isp_quantise(image, spec.isp_norm())
    return decode.dequantise(codes, spec.tensor())[None]


def emulate_frame(frame: np.ndarray, face_box: Sequence[float] | None, manifest: Manifest,
                  head: Head | None, sensor_graph: SensorGraph) -> tuple[np.ndarray, roi.Roi]:
    """One RGB uint8 frame and its face box (frame pixels) through the camera's path.

    The frame stands for the full sensor: its own size replaces ``roi.sensor_width/height``
    (normalised boxes do not depend on resolution). Returns ``(1, 2)`` cm and the ROI.
    """
    frame_size = (frame.shape[1], frame.shape[0])
    frame_roi = roi_for_face(face_box, frame_size, (0, 0, *frame_size), _on_frame(manifest,
                                                                                  frame_size))
    graph_out = np.asarray(sensor_graph(sensor_input(frame, frame_roi, manifest)))
    codes = decode.quantise(graph_out.reshape(len(graph_out), -1), manifest.output.tensor())
    values = decode.from_codes(codes, manifest.output.tensor())
    return gaze_cm(values, frame_roi, manifest, head), frame_roi


def _on_frame(manifest: Manifest, frame_size: tuple[int, int]) -> Manifest:
    """``manifest`` with the sensor size replaced by an emulated frame's size."""
    return replace(manifest, roi=replace(manifest.roi, sensor_width=frame_size[0],
                                         sensor_height=frame_size[1]))
