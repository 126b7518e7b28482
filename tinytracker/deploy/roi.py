"""The inference ROI: face box -> sensor rectangle, the ISP's crop+scale, the normalised box.

What the sources say (picamera2 ``picamera2/devices/imx500/imx500.py``, and the Raspberry Pi
AI Camera manual, ``documentation/asciidoc/accessories/ai-camera/details.adoc`` in
raspberrypi/documentation, https://www.raspberrypi.com/documentation/accessories/ai-camera.html):

* "The Region of Interest (ROI) specifies exactly which part of the sensor image is cropped out
  before being rescaled to the size demanded by the neural network ... The units used are
  always pixels in the full resolution sensor output." picamera2 hard-codes that resolution as
  ``Rectangle(0, 0, 4056, 3040)`` (``IMX500.__get_full_sensor_resolution``).
* ``IMX500.set_inference_roi_abs((left, top, width, height))`` bounds the rectangle to the
  full sensor (``Rectangle.bounded_to``) *silently*; :func:`face_roi` therefore clips or
  refuses before that, with a message.
* The ISP stretches the ROI to the input size, keeping no aspect ratio of its own. No source
  says so in words; we infer it from ``set_inference_aspect_ratio``, which exists to
  "preserve the given aspect ratio" by choosing a centre-cropped ROI, and from the manual's
  ``SetInferenceRoiAuto`` ("to preserve the input tensor aspect ratio"): neither would be
  needed if the ISP letterboxed. A square ROI fed to a square input tensor is therefore not
  distorted; a clipped, non-square one is, and so is the full 4:3 frame.
* The scaler's interpolation is not documented anywhere we found (manual, picamera2,
  rpicam-apps, modlib). :func:`emulate_isp` uses area averaging when shrinking (the ROI is
  always larger than the 112-224 px input: a face on a 4056x3040 sensor is hundreds of pixels)
  and bilinear when enlarging, which is what :func:`tinytracker.data.transforms.resize` does
  for the training crops, so the emulation adds no resize mismatch of its own. If a camera
  measurement shows a different kernel, change ``_INTERPOLATION`` here only.
* Input formats: ``network_info.txt`` in the ``.rpk`` carries ``inputTensorFormat`` = ``RGB``,
  ``BGR``, ``Y`` or ``BayerRGB`` and the ISP's normalisation registers
  ``inputTensorNorm_K00..K23`` (picamera2 turns them into ``norm_val``, ``norm_shift``,
  ``div_val``, ``div_shift``; its ``input_tensor_image`` undoes the normalisation as
  ``pixel = (((q << norm_shift) - norm_val) << div_shift) // div_val``; defaults
  ``norm_val=-2048, norm_shift=4, div_val=1024, div_shift=6``, i.e. ``q = pixel - 128``).
  :func:`isp_quantise` is the forward direction of that formula.

Rectangles are ``(x, y, w, h)`` integer pixels of the frame they belong to; ``frame_size`` is
``(width, height)``. The face box follows GazeCapture (``appleFace``: frame pixels).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tinytracker.data import geometry

log = logging.getLogger(__name__)

SENSOR_SIZE = (4056, 3040)  # picamera2's IMX500 full sensor resolution, (width, height)
INPUT_FORMATS = ("RGB", "BGR", "Y")  # BayerRGB: not emulated (our networks take RGB or grey)
EDGE_POLICIES = ("clip", "refuse")
_INTERPOLATION = {"shrink": cv2.INTER_AREA, "enlarge": cv2.INTER_LINEAR}

Rect = tuple[int, int, int, int]


class RoiError(ValueError):
    """A ROI that cannot be set: outside the frame, empty, or refused at an edge."""


@dataclass(frozen=True)
class RoiRule:
    """How a face box becomes the inference ROI (``deploy.json``'s ``roi``).

    ``mode``: ``"face"`` (from the host's face box) or ``"full_frame"`` (the whole sensor).
    ``square``: make the training crop square about its centre (side = its longer side), so
    that the ISP's stretch to a square input does not distort it. ``scale``: side multiplier
    about the centre (1.0 = the training crop). ``edge``: a ROI partly outside the frame is
    ``"clip"``ped to it (logged; the ISP then stretches a non-square face) or ``"refuse"``d.
    """

    mode: str = "face"
    square: bool = True
    scale: float = 1.0
    edge: str = "clip"

    def __post_init__(self) -> None:
        if self.mode not in ("face", "full_frame"):
            raise RoiError(f"roi.mode must be 'face' or 'full_frame', got {self.mode!r}")
        if self.edge not in EDGE_POLICIES:
            raise RoiError(f"roi.edge must be one of {EDGE_POLICIES}, got {self.edge!r}")
        if not (math.isfinite(self.scale) and self.scale > 0):
            raise RoiError(f"roi.scale must be a positive number, got {self.scale!r}")


@dataclass(frozen=True)
class Roi:
    """An inference ROI in frame pixels; ``clipped``: it was cut at the frame's edge."""

    rect: Rect
    frame_size: tuple[int, int]
    clipped: bool = False

    def as_tuple(self) -> Rect:
        """``(left, top, width, height)``, the argument of ``IMX500.set_inference_roi_abs``."""
        return self.rect


def training_crop(face_box: Sequence[float]) -> tuple[float, float, float, float]:
    """The face crop the data pipeline cuts for ``face_box`` ``(x, y, w, h)``: truncated to int,
    then grown by one pixel up-left (``prepareDataset.py``;
    :func:`~tinytracker.data.geometry.training_face_crop`)."""
    return geometry.training_face_crop(face_box)


def face_roi(face_box: Sequence[float], rule: RoiRule,
             frame_size: tuple[int, int] = SENSOR_SIZE) -> Roi:
    """The ROI for ``face_box`` ``(x, y, w, h)`` in pixels of a ``frame_size`` frame.

    Training crop (:func:`training_crop`) -> square about its centre (``rule.square``) ->
    scaled about its centre (``rule.scale``) -> rounded to whole pixels
    (:func:`~tinytracker.data.geometry.roi_rect`) -> clipped to the frame or refused
    (``rule.edge``, :func:`fit_to_frame`). A box wholly outside the frame, or with no area, is
    always refused: there is nothing to clip to. ``rule.mode == "full_frame"`` ignores the box.
    """
    if rule.mode == "full_frame":
        return full_frame_roi(frame_size)
    try:  # the arithmetic of the training field face_box: one definition, in data/
        rect = geometry.roi_rect(face_box, rule.square, rule.scale)
    except ValueError as err:
        raise RoiError(str(err)) from err
    return fit_to_frame(rect, frame_size, rule.edge, what=f"ROI for face box {tuple(face_box)}")


def full_frame_roi(frame_size: tuple[int, int] = SENSOR_SIZE) -> Roi:
    """The whole frame: the sensor's default ROI, for the ``frame`` position choice."""
    return Roi((0, 0, int(frame_size[0]), int(frame_size[1])), _size(frame_size))


def fit_to_frame(rect: Sequence[int], frame_size: tuple[int, int], edge: str = "clip",
                 what: str = "ROI") -> Roi:
    """``rect`` clipped to the frame (``edge="clip"``) or refused if it leaves it (``"refuse"``).

    Never wraps or shifts: a clipped ROI keeps the pixels it had and loses the rest.
    """
    if edge not in EDGE_POLICIES:
        raise RoiError(f"edge must be one of {EDGE_POLICIES}, got {edge!r}")
    width, height = _size(frame_size)
    x, y, w, h = (int(v) for v in rect)
    clipped = geometry.clip_rect((x, y, w, h), (width, height))
    if clipped is None:
        raise RoiError(f"{what}: {(x, y, w, h)} lies outside the {width}x{height} frame "
                       "(nothing to crop); no ROI set for this frame")
    if clipped == (x, y, w, h):
        return Roi(clipped, (width, height))
    sides = _sides_crossed((x, y, w, h), (width, height))
    if edge == "refuse":
        raise RoiError(f"{what}: {(x, y, w, h)} crosses the {sides} edge of the {width}x{height} "
                       "frame and roi.edge='refuse'; move the face into view or set "
                       "roi.edge='clip'")
    log.warning("%s: %s crosses the %s edge of the %dx%d frame; clipped to %s (the ISP will "
                "stretch it to the input size)", what, (x, y, w, h), sides, width, height, clipped)
    return Roi(clipped, (width, height), clipped=True)


def _sides_crossed(rect: Rect, frame_size: tuple[int, int]) -> str:
    x, y, w, h = rect
    sides = [name for name, out in (("left", x < 0), ("top", y < 0),
                                    ("right", x + w > frame_size[0]),
                                    ("bottom", y + h > frame_size[1])) if out]
    return "/".join(sides)


def _size(frame_size: Sequence[int]) -> tuple[int, int]:
    width, height = (int(v) for v in frame_size)
    if width <= 0 or height <= 0:
        raise RoiError(f"frame size must be positive (width, height), got {tuple(frame_size)}")
    return width, height


def stream_to_sensor(box: Sequence[float], stream_size: tuple[int, int],
                     scaler_crop: Sequence[int] | None = None) -> tuple[float, ...]:
    """A box ``(x, y, w, h)`` in pixels of a host stream -> full-sensor pixels.

    ``scaler_crop``: the sensor rectangle the stream shows (picamera2's ``ScalerCrop``
    metadata, full-sensor pixels); ``None``: the whole sensor. The inverse of picamera2's
    ``IMX500.__get_obj_scaled`` (translate by the crop, scale by crop size / stream size).
    """
    cx, cy, cw, ch = scaler_crop if scaler_crop is not None else (0, 0, *SENSOR_SIZE)
    sx, sy = cw / float(stream_size[0]), ch / float(stream_size[1])
    x, y, w, h = (float(v) for v in box)
    return (cx + x * sx, cy + y * sy, w * sx, h * sy)


def sensor_to_stream(rect: Sequence[float], stream_size: tuple[int, int],
                     scaler_crop: Sequence[int] | None = None) -> Rect:
    """A full-sensor rectangle -> whole pixels of the host stream (to draw the ROI)."""
    cx, cy, cw, ch = scaler_crop if scaler_crop is not None else (0, 0, *SENSOR_SIZE)
    sx, sy = float(stream_size[0]) / cw, float(stream_size[1]) / ch
    x, y, w, h = (float(v) for v in rect)
    return (round((x - cx) * sx), round((y - cy) * sy), round(w * sx), round(h * sy))


def corners(rect: Sequence[int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(x, y, w, h)`` -> ``((x0, y0), (x1, y1))``, the corners OpenCV draws between."""
    x, y, w, h = (int(v) for v in rect)
    return (x, y), (x + w, y + h)


def normalised_box(roi: Roi) -> np.ndarray:
    """The ROI as ``(x0, y0, x1, y1)`` in [0, 1] of its frame: float32 ``(4,)``.

    What the host head takes for the face's position (the ``late`` choice): independent of the
    frame's resolution, so a GazeCapture frame and the 4056x3040 sensor give the same box for
    the same framing.
    """
    return geometry.normalised_rect(roi.rect, roi.frame_size)


def emulate_isp(frame: np.ndarray, roi: Roi, input_size: tuple[int, int],
                fmt: str = "RGB") -> np.ndarray:
    """The input image the IMX500's ISP makes of ``frame`` for ``roi``, before quantisation.

    ``frame``: RGB uint8 ``(H, W, 3)`` whose size is ``roi.frame_size``; ``input_size``:
    ``(width, height)`` of the input tensor; ``fmt``: ``RGB``, ``BGR`` or ``Y`` (ITU-R BT.601
    luma, as OpenCV's ``COLOR_RGB2GRAY`` and the training's grey faces).
    Returns uint8 ``(C, height, width)``, planar like the sensor's tensor (C = 3, or 1 for Y).
    The crop is stretched to the input size (no letterbox); see the module doc for the filter.
    """
    if fmt not in INPUT_FORMATS:
        raise RoiError(f"input format must be one of {INPUT_FORMATS}, got {fmt!r}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise RoiError(f"frame must be RGB uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    if (frame.shape[1], frame.shape[0]) != roi.frame_size:
        raise RoiError(f"the ROI belongs to a {roi.frame_size[0]}x{roi.frame_size[1]} frame but "
                       f"the frame is {frame.shape[1]}x{frame.shape[0]}")
    x, y, w, h = roi.rect
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + w > roi.frame_size[0] \
            or y + h > roi.frame_size[1]:
        # numpy would wrap a negative start: refuse instead (fit_to_frame clips first)
        raise RoiError(f"ROI {roi.rect} is not inside the {roi.frame_size[0]}x"
                       f"{roi.frame_size[1]} frame; clip it with fit_to_frame first")
    crop = frame[y:y + h, x:x + w]
    out_w, out_h = (int(v) for v in input_size)
    shrink = w > out_w or h > out_h
    scaled = cv2.resize(crop, (out_w, out_h),
                        interpolation=_INTERPOLATION["shrink" if shrink else "enlarge"])
    if fmt == "Y":
        return cv2.cvtColor(scaled, cv2.COLOR_RGB2GRAY)[None]
    planar = np.ascontiguousarray(scaled.transpose(2, 0, 1))
    return planar[::-1].copy() if fmt == "BGR" else planar


@dataclass(frozen=True)
class IspNorm:
    """The ISP's input normalisation, one entry per channel (picamera2's names).

    ``q = clip(((pixel * div_val) >> div_shift) + norm_val) >> norm_shift, int8)``: the forward
    direction of picamera2's ``input_tensor_image``. Defaults: ``q = pixel - 128``.
    """

    norm_val: tuple[int, ...] = (-2048, -2048, -2048)
    norm_shift: tuple[int, ...] = (4, 4, 4)
    div_val: tuple[int, ...] = (1024, 1024, 1024)
    div_shift: int = 6

    @classmethod
    def for_normalisation(cls, mean: float, std: float, input_scale: float,
                          channels: int = 3) -> IspNorm:
        """Registers that give ``q ≈ ((pixel / 255 - mean) / std) / input_scale``, the int8
        code of the model's own normalisation (``(x/255 - mean) / std``, ``SampleSpec``) at
        the input tensor's scale (``dnnParams.xml``). Shifts fixed at picamera2's defaults."""
        norm_shift, div_shift = 4, 6
        gain = 1.0 / (255.0 * std * input_scale)  # q per pixel step
        offset = -mean / (std * input_scale)  # q at pixel 0
        div_val = round(gain * (1 << (norm_shift + div_shift)))
        norm_val = round(offset * (1 << norm_shift))
        return cls((norm_val,) * channels, (norm_shift,) * channels, (div_val,) * channels,
                   div_shift)


def isp_quantise(image: np.ndarray, norm: IspNorm = IspNorm()) -> np.ndarray:
    """uint8 planar ``(C, H, W)`` from :func:`emulate_isp` -> the int8 input tensor codes."""
    if image.dtype != np.uint8 or image.ndim != 3:
        raise RoiError(f"image must be uint8 (C, H, W), got {image.dtype} {image.shape}")
    if image.shape[0] > len(norm.div_val):
        raise RoiError(f"{image.shape[0]} channels but the ISP norm has {len(norm.div_val)}")
    channels = image.shape[0]
    pixel = image.astype(np.int32)
    div_val = np.array(norm.div_val[:channels], dtype=np.int32)[:, None, None]
    norm_val = np.array(norm.norm_val[:channels], dtype=np.int32)[:, None, None]
    norm_shift = np.array(norm.norm_shift[:channels], dtype=np.int32)[:, None, None]
    q = (((pixel * div_val) >> norm.div_shift) + norm_val) >> norm_shift
    return np.clip(q, -128, 127).astype(np.int8)
