"""Camera frame + detector boxes -> model inputs, as the data pipeline builds them.

The data pipeline reaches a sample in two steps: ``prepare`` crops the frame with the boxes of
the public ``prepareDataset.py`` (:func:`crop_boxes`) and stores the crops, then
:class:`~tinytracker.data.dataset.GazeDataset` resizes and normalises them and expands the
face grid (:func:`sample_inputs`). :func:`frame_inputs` does both steps on a frame in memory
(without the JPEG round trip of the stored crops), for ``predict``; the geometry is that of
:mod:`tinytracker.data.geometry`.

Boxes follow GazeCapture: the face box ``(x, y, w, h)`` in frame pixels (``appleFace``), eye
boxes relative to the face box (``appleLeftEye`` = the subject's left eye, on the image's
right side of an unmirrored frame).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from tinytracker.data.dataset import IMAGE_FIELDS, SampleSpec
from tinytracker.data.geometry import (
    crop_with_padding,
    eye_box_in_frame,
    face_grid_from_rect,
    face_grid_mask,
    grid_embedding,
)
from tinytracker.data.transforms import resize, to_tensor_layout

# prepareDataset.py: face box grown by one pixel up-left, eye boxes moved one pixel up,
# "for compatibility with matlab code" (1-based MATLAB indexing).
FACE_BOX_OFFSET = np.array([-1, -1, 1, 1])
EYE_BOX_OFFSET = np.array([0, -1, 0, 0])
EYE_FIELDS = {"eye_left": "left_eye", "eye_right": "right_eye"}


def crop_boxes(face: np.ndarray | Sequence[float], left_eye: np.ndarray | Sequence[float] | None,
               right_eye: np.ndarray | Sequence[float] | None) -> dict[str, np.ndarray]:
    """Absolute int ``(x, y, w, h)`` crop boxes, exactly as the public ``prepareDataset.py``.

    Takes one box ``(4,)`` or a stack ``(N, 4)`` of each (eye boxes relative to the face box,
    may be None); boxes are truncated to int before the offsets are added, and eye boxes are
    made absolute with the adjusted face origin. Keys: ``face``, ``left_eye``, ``right_eye``.
    """
    face_box = np.asarray(face, dtype=np.float64).astype(np.int64) + FACE_BOX_OFFSET
    out = {"face": face_box}
    for key, eye in (("left_eye", left_eye), ("right_eye", right_eye)):
        if eye is None:
            continue
        eye_box = np.asarray(eye, dtype=np.float64).astype(np.int64) + EYE_BOX_OFFSET
        pairs = zip(face_box.reshape(-1, 4), eye_box.reshape(-1, 4), strict=True)
        out[key] = np.array([eye_box_in_frame(f, e) for f, e in pairs],
                            dtype=np.int64).reshape(eye_box.shape)
    return out


def sample_inputs(crops: Mapping[str, np.ndarray], grid: Sequence[float], spec: SampleSpec,
                  augment: Callable[..., dict] | None = None) -> dict[str, np.ndarray]:
    """The fields ``spec.inputs`` of one sample from its crops and face-grid parameters.

    ``crops``: RGB uint8 crops of any size by field name (``face``, ``eye_left``,
    ``eye_right``; only those in ``spec.inputs`` are used); ``grid``: 1-based ``(X, Y, W, H)``
    face-grid cells; ``augment``: an albumentations pipeline applied after resizing.
    Returns float32 arrays without a batch dimension: ``face`` ``(C, S, S)``,
    ``eye_left``/``eye_right`` ``(3, E, E)``, ``face_grid`` ``(625,)``, ``grid_embedding``
    ``(2, S, S)``, as :class:`~tinytracker.data.dataset.GazeDataset` yields them.
    """
    out: dict[str, np.ndarray] = {}
    for name in IMAGE_FIELDS:
        if name not in spec.inputs:
            continue
        image = resize(crops[name], spec.image_size(name))
        if augment is not None:
            image = augment(image=image)["image"]
        out[name] = to_tensor_layout(image, spec.grey and name == "face", spec.mean, spec.std)
    if "face_grid" in spec.inputs:
        out["face_grid"] = face_grid_mask(grid)
    if "grid_embedding" in spec.inputs:
        out["grid_embedding"] = grid_embedding(grid, spec.face_size, spec.face_size)
    return out


def frame_inputs(frame: np.ndarray, face_box: Sequence[float], spec: SampleSpec,
                 left_eye: Sequence[float] | None = None,
                 right_eye: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """:func:`sample_inputs` of an RGB uint8 ``HxWx3`` frame and its detector boxes.

    Crops with :func:`crop_boxes`; the face grid comes from the face box as GazeCapture's
    ``faceGrid.json`` does (:func:`~tinytracker.data.geometry.face_grid_from_rect`).
    """
    height, width = frame.shape[:2]
    boxes = crop_boxes(face_box, left_eye, right_eye)
    crops = {}
    for name in IMAGE_FIELDS:
        if name not in spec.inputs:
            continue
        box = boxes.get(EYE_FIELDS.get(name, "face"))
        if box is None:
            raise ValueError(f"the model takes {name} but no {EYE_FIELDS[name]} box was given")
        crops[name] = crop_with_padding(frame, box)
    return sample_inputs(crops, face_grid_from_rect(width, height, *face_box), spec)
