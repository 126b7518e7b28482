"""Crop, face-grid and grid-embedding geometry, shared by the data pipeline and ``predict``.

Conventions follow the public GazeCapture release (CSAILVision/GazeCapture):

* Boxes are ``(x, y, w, h)`` in pixels of the full camera frame; ``appleLeftEye`` /
  ``appleRightEye`` boxes are relative to the ``appleFace`` box.
* The face grid is a 25x25 binary mask over the frame. ``faceGrid.json`` stores it as
  1-based ``(X, Y, W, H)`` grid cells, computed like GazeCapture's MATLAB
  ``faceGridFromFaceRect``; the public PyTorch loader expands it with ``makeGrid``.
* TinyTracker's optional 2-channel grid embedding holds, for each pixel of the face crop,
  the horizontal and vertical position of that pixel in the frame, linearly mapped to
  [-1, 1]; it is built from the face-grid box, as the TinyTracker authors' training pipeline
  does (``create_grid`` in pbonazzi/tinytracker src/ITrackerDataTF.py), in one of two
  conventions (:data:`~tinytracker.data.spec.GRID_CONVENTIONS`): ours starts at the box's
  cell edge, theirs one cell further (their released weights learned theirs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

FACE_GRID_SIZE = 25
# The frame the face grid was computed over in training: GazeCapture's frames are the front
# camera's full captures downscaled to VGA, 480x640 in portrait (640x480 in landscape)
# (GazeCapture issue #23), and the 25x25 grid covers the frame whatever its aspect (issue
# #19). Its camera: focal length 600 px at that size (43.6 deg across the 480 px side), the
# synthetic generator's default (tinytracker.data.synthetic), our stand-in for the iPhones'
# front cameras; the principal point at the frame's centre.
GAZECAPTURE_FRAME_PX = (480, 640)
GAZECAPTURE_FOCAL_PX = 600.0
GAZECAPTURE_FOV_DEG = math.degrees(2 * math.atan(GAZECAPTURE_FRAME_PX[0] / 2
                                                 / GAZECAPTURE_FOCAL_PX))
# prepareDataset.py: the face box grown by one pixel up-left, eye boxes moved one pixel up,
# "for compatibility with matlab code" (1-based MATLAB indexing). Training crops (prepare) and
# live crops (predict) both come from crop_boxes, so they cannot drift apart.
FACE_BOX_OFFSET = np.array([-1, -1, 1, 1])
EYE_BOX_OFFSET = np.array([0, -1, 0, 0])


def face_grid_from_rect(
    frame_w: int,
    frame_h: int,
    face_x: float,
    face_y: float,
    face_w: float,
    face_h: float,
    grid_size: int = FACE_GRID_SIZE,
) -> tuple[int, int, int, int]:
    """Face rectangle in frame pixels -> 1-based ``(X, Y, W, H)`` grid cells.

    Same arithmetic as GazeCapture's ``faceGridFromFaceRect.m`` (parameterized form).
    """
    scale_x = grid_size / frame_w
    scale_y = grid_size / frame_h
    x = int(round(face_x * scale_x)) + 1
    y = int(round(face_y * scale_y)) + 1
    w = int(round(face_w * scale_x))
    h = int(round(face_h * scale_y))
    return x, y, w, h


def grid_frame_box(face_box: Sequence[float], frame_size: Sequence[int],
                   fov_deg: float | None = None) -> tuple[tuple[float, ...], tuple[int, int]]:
    """The face box in the frame the face grid is computed over, and that frame's size.

    ``fov_deg=None``: the frame itself. Otherwise ``fov_deg`` is the field of view of the camera
    that took the ``frame_size = (width, height)`` frame, across its shorter side, with the
    principal point at its centre: the box is carried, by angle, into a GazeCapture frame
    (:data:`GAZECAPTURE_FRAME_PX`, portrait unless the frame is wider than tall, focal length
    :data:`GAZECAPTURE_FOCAL_PX`), so that the face grid says where the face is as seen from
    the camera, in the terms the models learned. For a 480x640 frame at
    :data:`GAZECAPTURE_FOV_DEG` the box is unchanged.
    """
    if fov_deg is None:
        return tuple(float(v) for v in face_box), (int(frame_size[0]), int(frame_size[1]))
    if not 0 < fov_deg < 180:
        raise ValueError(f"camera_fov_deg must be in (0, 180), got {fov_deg}")
    width, height = (float(v) for v in frame_size)
    focal_px = min(width, height) / 2 / math.tan(math.radians(fov_deg) / 2)
    k = GAZECAPTURE_FOCAL_PX / focal_px
    short, long = GAZECAPTURE_FRAME_PX
    out_w, out_h = (short, long) if height >= width else (long, short)
    x, y, w, h = (float(v) for v in face_box)
    box = ((x - width / 2) * k + out_w / 2, (y - height / 2) * k + out_h / 2, w * k, h * k)
    return box, (out_w, out_h)


def camera_face_grid(face_box: Sequence[float], frame_size: Sequence[int],
                     fov_deg: float | None = None) -> tuple[int, int, int, int]:
    """``faceGrid.json``'s ``(X, Y, W, H)`` for a face box in a frame of a camera whose field of
    view across the shorter side is ``fov_deg`` (``None``: the frame is the grid's frame), as
    :func:`grid_frame_box` places it."""
    box, (width, height) = grid_frame_box(face_box, frame_size, fov_deg)
    return face_grid_from_rect(width, height, *box)


def face_grid_mask(params: Sequence[float], grid_size: int = FACE_GRID_SIZE) -> np.ndarray:
    """Expand ``(X, Y, W, H)`` grid parameters into a flat ``grid_size**2`` float32 mask.

    Reproduces ``makeGrid`` of the public iTracker PyTorch loader *exactly*, including its
    use of the 1-based ``X``/``Y`` against 0-based cell indices, so models trained with it
    and checkpoints converted from it see the same input.
    """
    return _face_grid_mask(tuple(float(p) for p in params), grid_size).copy()


@lru_cache(maxsize=16384)  # a data loader sees the same few thousand boxes again and again
def _face_grid_mask(params: tuple[float, ...], grid_size: int) -> np.ndarray:
    x, y, w, h = params
    idx = np.arange(grid_size * grid_size)
    inds_y = idx // grid_size
    inds_x = idx % grid_size
    cond_x = (inds_x >= x) & (inds_x < x + w)
    cond_y = (inds_y >= y) & (inds_y < y + h)
    mask = (cond_x & cond_y).astype(np.float32)
    mask.flags.writeable = False
    return mask


# The cell index that maps to -1 in each grid-embedding convention (data.spec.GRID_CONVENTIONS):
# ours subtracts 1 from faceGrid.json's 1-based X/Y (the box's left/top edge); the authors'
# create_grid (src/ITrackerDataTF.py: ``x_start = g[0]*2/25 - 1``) uses X/Y as they are.
GRID_ORIGIN_CELL = {"cell_edges": 1.0, "authors_tf": 0.0}


def grid_embedding(
    params: Sequence[float], height: int, width: int, grid_size: int = FACE_GRID_SIZE,
    out: np.ndarray | None = None, convention: str = "cell_edges",
) -> np.ndarray:
    """2-channel ``(2, height, width)`` float32 embedding of where the face crop sits in the frame.

    Channel 0 varies along x, channel 1 along y (the authors stack ``gridX, gridY`` after the
    image channels, ``concat([image, gridX, gridY])``). ``convention="cell_edges"``: the left
    edge of the face-grid box maps to ``2 * (X - 1) / grid_size - 1`` and the right edge to
    ``2 * (X - 1 + W) / grid_size - 1`` (likewise for y), so a face filling the whole frame
    spans exactly [-1, 1]. ``"authors_tf"``: ``2 * X / grid_size - 1`` to
    ``2 * (X + W) / grid_size - 1``, the authors' training ``create_grid`` (one cell further;
    a face at the right edge reaches 1.08). Positions are a linspace over the crop's pixels
    in both. ``out``: an array to fill instead of a new one (a batch slice).
    """
    if convention not in GRID_ORIGIN_CELL:
        raise ValueError(f"grid_convention must be one of {tuple(GRID_ORIGIN_CELL)}, got "
                         f"{convention!r}")
    origin = GRID_ORIGIN_CELL[convention]
    x, y, w, h = (float(p) for p in params)
    emb = np.empty((2, height, width), dtype=np.float32) if out is None else out
    emb[0] = _grid_axis(x - origin, w, width, grid_size)[None, :]
    emb[1] = _grid_axis(y - origin, h, height, grid_size)[:, None]
    return emb


@lru_cache(maxsize=16384)
def _grid_axis(start: float, cells: float, n: int, grid_size: int) -> np.ndarray:
    """``n`` positions across ``cells`` cells from the 0-based cell position ``start``."""
    lo = 2.0 * start / grid_size - 1.0
    hi = 2.0 * (start + cells) / grid_size - 1.0
    axis = np.linspace(lo, hi, n, dtype=np.float32)
    axis.flags.writeable = False
    return axis


def crop_with_padding(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Crop ``box = (x, y, w, h)`` from an ``HxWxC`` image, zero-filling outside the frame.

    Same semantics as ``cropImage`` in the public ``prepareDataset.py``: the box is
    truncated to integers and the result is always exactly ``h x w``.
    """
    bx, by, bw, bh = (int(v) for v in box)
    if bw <= 0 or bh <= 0:
        raise ValueError(f"crop box must have positive width and height, got {tuple(box)}")
    img_h, img_w = image.shape[:2]
    src_x0, src_y0 = max(bx, 0), max(by, 0)
    src_x1, src_y1 = min(bx + bw, img_w), min(by + bh, img_h)
    out = np.zeros((bh, bw) + image.shape[2:], dtype=image.dtype)
    if src_x1 > src_x0 and src_y1 > src_y0:
        dst_x0, dst_y0 = src_x0 - bx, src_y0 - by
        out[dst_y0 : dst_y0 + (src_y1 - src_y0), dst_x0 : dst_x0 + (src_x1 - src_x0)] = image[
            src_y0:src_y1, src_x0:src_x1
        ]
    return out


def eye_box_in_frame(face_box: Sequence[float], eye_box: Sequence[float]) -> tuple[float, ...]:
    """Eye box relative to the face box (as in ``appleLeftEye.json``) -> frame coordinates."""
    fx, fy = face_box[0], face_box[1]
    ex, ey, ew, eh = eye_box
    return (fx + ex, fy + ey, ew, eh)


def crop_boxes(face: np.ndarray | Sequence[float], eye_left: np.ndarray | Sequence[float] | None,
               eye_right: np.ndarray | Sequence[float] | None) -> dict[str, np.ndarray]:
    """Absolute int ``(x, y, w, h)`` crop boxes, exactly as the public ``prepareDataset.py``.

    Takes one box ``(4,)`` or a stack ``(N, 4)`` of each (eye boxes relative to the face box,
    ``appleLeftEye`` = the subject's left eye; may be None); boxes are truncated to int before
    :data:`FACE_BOX_OFFSET` / :data:`EYE_BOX_OFFSET` are added, and eye boxes are made absolute
    with the adjusted face origin. Keys: the batch fields ``face``, ``eye_left``, ``eye_right``.
    """
    face_box = np.asarray(face, dtype=np.float64).astype(np.int64) + FACE_BOX_OFFSET
    out = {"face": face_box}
    for key, eye in (("eye_left", eye_left), ("eye_right", eye_right)):
        if eye is None:
            continue
        eye_box = np.asarray(eye, dtype=np.float64).astype(np.int64) + EYE_BOX_OFFSET
        pairs = zip(face_box.reshape(-1, 4), eye_box.reshape(-1, 4), strict=True)
        out[key] = np.array([eye_box_in_frame(f, e) for f, e in pairs],
                            dtype=np.int64).reshape(eye_box.shape)
    return out


def training_face_crop(face_box: Sequence[float]) -> tuple[float, float, float, float]:
    """The face crop ``(x, y, w, h)`` that :func:`crop_boxes` (``prepare``, ``predict``) cuts for
    one face box: truncated to int, then grown by :data:`FACE_BOX_OFFSET`."""
    box = crop_boxes(np.asarray(face_box, dtype=np.float64), None, None)["face"]
    return tuple(float(v) for v in box)


def roi_rect(face_box: Sequence[float], square: bool = True,
             scale: float = 1.0) -> tuple[int, int, int, int]:
    """The inference ROI for ``face_box`` ``(x, y, w, h)`` before it meets the frame's edges:
    the training crop (:func:`training_face_crop`), squared about its centre (side = its
    longer side) when ``square``, scaled about its centre, rounded to whole pixels (at least
    1 x 1). Raises ``ValueError`` for a box with no area.

    The one definition of that arithmetic: the camera's ROI
    (:func:`tinytracker.deploy.roi.face_roi`, which then clips or refuses at the edge) and the
    ``face_box`` training field (:func:`normalised_face_box`) both start here.
    """
    x, y, w, h = training_face_crop(face_box)
    if w <= 0 or h <= 0:
        raise ValueError(f"face box {tuple(face_box)} has no area (width and height must be "
                         "> 0)")
    cx, cy = x + w / 2, y + h / 2
    if square:
        w = h = max(w, h)
    w, h = w * scale, h * scale
    return round(cx - w / 2), round(cy - h / 2), max(1, round(w)), max(1, round(h))


def clip_rect(rect: Sequence[int], frame_size: Sequence[int]
              ) -> tuple[int, int, int, int] | None:
    """``rect`` ``(x, y, w, h)`` cut to a ``frame_size = (width, height)`` frame (never shifted
    or wrapped: the pixels inside are kept, the rest lost); ``None`` when nothing of it is
    inside."""
    x, y, w, h = (int(v) for v in rect)
    width, height = (int(v) for v in frame_size)
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    if w <= 0 or h <= 0 or x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1 - x0, y1 - y0


def inference_roi(face_box: Sequence[float], frame_size: Sequence[int],
                  square: bool = True, scale: float = 1.0) -> tuple[int, int, int, int]:
    """The inference ROI the camera sets for ``face_box`` ``(x, y, w, h)``: whole pixels of a
    ``frame_size = (width, height)`` frame, clipped to it (:func:`roi_rect` then
    :func:`clip_rect`; the camera's :func:`tinytracker.deploy.roi.face_roi` with
    ``edge="clip"``). Raises ``ValueError`` for a box with no area or wholly outside the frame.
    """
    clipped = clip_rect(roi_rect(face_box, square, scale), frame_size)
    if clipped is None:
        width, height = (int(v) for v in frame_size)
        raise ValueError(f"face box {tuple(face_box)} lies outside the {width}x{height} frame")
    return clipped


def normalised_face_box(face_box: Sequence[float], frame_size: Sequence[int]) -> np.ndarray:
    """``(x0, y0, x1, y1)`` in [0, 1] of the frame: float32 ``(4,)``, the ``face_box`` batch
    field of ``model.position=late``.

    The camera's ``normalised_box(face_roi(face_box, RoiRule(), frame_size))``
    (:mod:`tinytracker.deploy.roi`; the default ROI rule: square, scale 1, clipped), so the head
    sees in training the box the camera's ROI gives it.
    """
    return normalised_rect(inference_roi(face_box, frame_size), frame_size)


def normalised_rect(rect: Sequence[int], frame_size: Sequence[int]) -> np.ndarray:
    """``rect`` ``(x, y, w, h)`` in pixels of a ``frame_size = (width, height)`` frame as
    ``(x0, y0, x1, y1)`` in [0, 1] of it: float32 ``(4,)``, independent of the resolution."""
    x, y, w, h = rect
    width, height = frame_size
    return np.array([x / width, y / height, (x + w) / width, (y + h) / height], dtype=np.float32)


def face_grid_box(params: Sequence[float], grid_size: int = FACE_GRID_SIZE) -> np.ndarray:
    """The face-grid box ``(X, Y, W, H)`` (1-based cells) as ``(x0, y0, x1, y1)`` in [0, 1].

    The fallback ``face_box`` of a processed directory that does not record the face box in
    pixels (one written by the public ``prepareDataset.py``): the box to 1/25 of the frame, the
    same edges as :func:`grid_embedding`'s.
    """
    x, y, w, h = (float(p) for p in params)
    box = np.array([x - 1, y - 1, x - 1 + w, y - 1 + h], dtype=np.float64) / grid_size
    return np.clip(box, 0.0, 1.0).astype(np.float32)
