"""What of a checkpoint runs on the IMX500, what on the host, and the files the camera side reads.

The sensor fills exactly one input tensor from its ISP, so the sensor graph must take one
image: ``net.sensor_net()`` (the ``position`` choices ``none``, ``late``, ``frame``) or, for a
net without that method, the net itself when it takes one input. The ``late`` choice's host
head (``net.host_head()``) is written with :func:`tinytracker.deploy.head.save_head`, and
``deploy.json`` (:mod:`tinytracker.deploy.manifest`) says how to feed and read the sensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from tinytracker.checksum import file_sha256
from tinytracker.deploy.decode import parse_dnn_params
from tinytracker.deploy.head import Head, layers_from_module, load_head, save_head
from tinytracker.deploy.manifest import (
    FILE_NAME,
    Manifest,
    RoiSpec,
    manifest_for_export,
    write_manifest,
)
from tinytracker.export.errors import ExportError

DEPLOYABLE_POSITIONS = ("none", "late", "frame")
HEAD_FILE = "head.npz"


@dataclass
class SensorPart:
    """The on-sensor graph (float), the fields it takes, and the float host head if any."""

    net: nn.Module
    input_keys: tuple[str, ...]
    host_head: nn.Module | None


def sensor_part(float_net: nn.Module, ckpt_path: str) -> SensorPart:
    """Split ``float_net``; a net the sensor cannot feed (two inputs) is refused by name."""
    keys = tuple(getattr(float_net, "sensor_input_keys", None) or float_net.input_keys)
    if len(keys) != 1:
        raise ExportError(
            f"ckpt_path={ckpt_path}: its network takes {len(keys)} input tensors on the sensor "
            f"({', '.join(keys)}), but the IMX500's ISP fills exactly one, so the camera cannot "
            "run it. Train a deployable choice instead: model.position="
            f"{'|'.join(DEPLOYABLE_POSITIONS)} (none: the face only; late: the face box joins "
            "in a head on the host; frame: the whole frame, no face detector), e.g. "
            "python -m tinytracker.train +experiment=position_late. format=onnx exports this "
            "model for CPU targets.")
    sensor = float_net.sensor_net() if hasattr(float_net, "sensor_net") else float_net
    head = float_net.host_head() if hasattr(float_net, "host_head") else None
    return SensorPart(sensor, keys, head)


def roi_spec(part: SensorPart) -> RoiSpec:
    """The whole frame for the ``frame`` choice, else the face ROI of the training crop."""
    return RoiSpec(mode="full_frame" if part.input_keys == ("frame",) else "face")


def write_camera_files(part: SensorPart, dnn_params: Path, input_spec: dict[str, Any],
                       ckpt_path: str, out_dir: Path) -> tuple[Path, Manifest, Head | None]:
    """``deploy.json`` (and ``head.npz`` for a net with a host head) into ``out_dir``."""
    sha = file_sha256(ckpt_path)
    head = None
    if part.host_head is not None:
        weights, biases, relu, film = layers_from_module(part.host_head)
        head = load_head(save_head(out_dir / HEAD_FILE, weights, biases, sha, relu, film))
    manifest = manifest_for_export(
        parse_dnn_params(dnn_params), dnn_params,
        input_format="Y" if input_spec.get("grey") else "RGB",
        mean=float(input_spec.get("mean", 0.5)), std=float(input_spec.get("std", 0.5)),
        roi=roi_spec(part), output_kind="gaze_cm" if head is None else "features",
        head_file=None if head is None else HEAD_FILE, ckpt_sha256=sha)
    return write_manifest(out_dir / FILE_NAME, manifest), manifest, head
