"""The IMX500-bound model evaluated the way the camera feeds it, on the full frames of a split.

Per test frame of the raw layout (``NNNNN/frames/FFFFF.jpg`` and its ``appleFace.json`` box):
face box -> inference ROI -> the ISP's crop+scale -> the input's int8 codes as ``dnnParams.xml``
states -> the MCT-quantized sensor graph in ONNX Runtime -> the output tensor's int8 codes ->
the host head, all through :func:`tinytracker.deploy.camera.emulate_frame`, the same functions
the Raspberry Pi program runs. What differs from the training pipeline is exactly what differs
on the camera: no JPEG re-encoding of the face crop, a ROI clipped at the frame's edge instead
of zero padding, and integer input codes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinytracker.deploy.camera import SensorGraph, emulate_frame
from tinytracker.deploy.head import Head
from tinytracker.deploy.manifest import Manifest

log = logging.getLogger(__name__)


class EmulationUnavailable(RuntimeError):
    """The data has no full frames (a processed-only GazeCapture copy): nothing to emulate."""


@dataclass(frozen=True)
class CameraFrame:
    """One full frame as the sensor sees it, its face box and its label."""

    frame: np.ndarray  # RGB uint8 (H, W, 3)
    face_box: tuple[float, float, float, float]  # (x, y, w, h) frame pixels (appleFace)
    gaze_cm: np.ndarray  # (2,) XCam, YCam


def mct_onnx_session(onnx_path: Path | str):
    """ONNX Runtime session of MCT's ONNX: its quantizer ops need ``mct_quantizers``' kernels."""
    import mct_quantizers
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), mct_quantizers.get_ort_session_options(),
                                providers=["CPUExecutionProvider"])


def session_graph(session) -> SensorGraph:
    """The session as :data:`~tinytracker.deploy.camera.SensorGraph`: (N, C, H, W) -> (N, D)."""
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


def raw_dir_of(datamodule) -> Path:
    """The raw-layout folder the datamodule's processed split was prepared from."""
    if datamodule.source == "synthetic":
        # the generator's cache (GazeDataModule keeps it beside the processed data)
        raw = datamodule._synthetic_dir() / "raw"
    else:
        raw = Path(str(datamodule.root)).expanduser()
    if not any(raw.glob("*/frames.json")):
        raise EmulationUnavailable(
            f"data.root={raw} holds no raw recordings (NNNNN/frames.json and frames/*.jpg): the "
            "camera emulation needs the full frames, which a processed-only copy lacks")
    return raw


def camera_frames(datamodule, split: str) -> Iterator[CameraFrame]:
    """The frames of ``split`` (the datamodule's own index, same frames and order) as full
    raw frames with their face boxes."""
    from tinytracker.data.gazecapture import load_frame, read_recording

    raw = raw_dir_of(datamodule)
    index = datamodule.index.split_of(split)
    recordings: dict[int, tuple] = {}
    for rec_num, frame_index, gaze in zip(index.rec_num, index.frame_index, index.gaze_cm,
                                          strict=True):
        if int(rec_num) not in recordings:
            rec = read_recording(raw / f"{int(rec_num):05d}", skip_bad=datamodule.skip_bad)
            recordings[int(rec_num)] = (rec, {int(f): r for r, f in enumerate(rec.frame_index)})
        rec, rows = recordings[int(rec_num)]
        row = rows[int(frame_index)]
        yield CameraFrame(load_frame(rec, row), tuple(float(v) for v in rec.face.xywh[row]),
                          np.asarray(gaze, dtype=np.float64))


def emulate_split(frames: Iterator[CameraFrame], manifest: Manifest, head: Head | None,
                  graph: SensorGraph) -> dict[str, np.ndarray]:
    """Every frame through the camera's path: predictions, targets, clipped-ROI flags."""
    pred, target, clipped = [], [], []
    for item in frames:
        gaze, roi = emulate_frame(item.frame, item.face_box, manifest, head, graph)
        pred.append(gaze[0])
        target.append(item.gaze_cm)
        clipped.append(roi.clipped)
    return {"pred": np.asarray(pred, dtype=np.float64), "target": np.asarray(target),
            "clipped": np.asarray(clipped, dtype=bool)}


def emulated_entries(datamodule, split: str, manifest: Manifest, head: Head | None,
                     graph: SensorGraph) -> dict[str, float | int | str]:
    """``export.json`` entries of the emulated camera on ``split``."""
    try:
        out = emulate_split(camera_frames(datamodule, split), manifest, head, graph)
    except EmulationUnavailable as err:
        log.warning("camera emulation skipped: %s", err)
        return {"imx500/emulated_skipped": str(err)}
    error = np.linalg.norm(out["pred"] - out["target"], axis=1).mean()
    return {
        f"imx500/emulated_{split}_error_cm": float(error),
        f"imx500/emulated_{split}_frames": int(len(out["target"])),
        f"imx500/emulated_{split}_rois_clipped": int(out["clipped"].sum()),
    }
