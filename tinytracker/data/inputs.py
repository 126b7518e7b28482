"""Camera frame + detector boxes -> model inputs, as the data pipeline builds them.

The data pipeline reaches a sample in two steps: ``prepare`` crops the frame with the boxes of
the public ``prepareDataset.py`` (:func:`~tinytracker.data.geometry.crop_boxes`) and stores
the crops, then
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

from tinytracker.data.dataset import FACE_SIZED, IMAGE_FIELDS
from tinytracker.data.geometry import (
    camera_face_grid,
    crop_boxes,
    crop_with_padding,
    face_grid_mask,
    grid_embedding,
    normalised_face_box,
)
from tinytracker.data.spec import SampleSpec
from tinytracker.data.transforms import resize, to_tensor_layout


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
        image = resize(crops[name], spec.image_size(name), spec.interpolation)
        if augment is not None:
            image = augment(image=image)["image"]
        out[name] = to_tensor_layout(image, spec.grey and name in FACE_SIZED, spec.mean,
                                     spec.std)
    if "face_grid" in spec.inputs:
        out["face_grid"] = face_grid_mask(grid)
    if "grid_embedding" in spec.inputs:
        out["grid_embedding"] = grid_embedding(grid, spec.face_size, spec.face_size,
                                               convention=spec.grid_convention)
    return out


def frame_crops(frame: np.ndarray, face_box: Sequence[float], fields: Sequence[str],
                left_eye: Sequence[float] | None = None,
                right_eye: Sequence[float] | None = None) -> dict[str, np.ndarray]:
    """The crops ``fields`` (``face``, ``eye_left``, ``eye_right``) of an RGB uint8 frame at
    the boxes ``prepare`` crops stored data at (:func:`~tinytracker.data.geometry.crop_boxes`)."""
    boxes = crop_boxes(face_box, left_eye, right_eye)
    crops = {}
    for name in IMAGE_FIELDS:
        if name not in fields:
            continue
        if name == "frame":  # the whole frame: the full-frame ROI of model.position=frame
            crops[name] = frame
            continue
        if name not in boxes:
            raise ValueError(f"the model takes {name} but no box of that eye was given")
        crops[name] = crop_with_padding(frame, boxes[name])
    return crops


# The fields computed from the face box; a model taking none of them (model.position=frame:
# the whole frame only) needs no face.
FACE_FIELDS = ("face", "eye_left", "eye_right", "face_grid", "grid_embedding", "face_box")


def needs_face(inputs: Sequence[str]) -> bool:
    """Whether a model with these input fields needs a face box (``frame`` alone does not)."""
    return any(name in FACE_FIELDS for name in inputs)


def frame_inputs(frame: np.ndarray, face_box: Sequence[float] | None, spec: SampleSpec,
                 left_eye: Sequence[float] | None = None,
                 right_eye: Sequence[float] | None = None,
                 camera_fov_deg: float | None = None) -> dict[str, np.ndarray]:
    """:func:`sample_inputs` of an RGB uint8 ``HxWx3`` frame and its detector boxes.

    Crops with :func:`frame_crops`; the face grid comes from the face box as GazeCapture's
    ``faceGrid.json`` does (:func:`~tinytracker.data.geometry.face_grid_from_rect`), in the
    frame itself (``camera_fov_deg=None``) or, for a camera with that field of view across
    the frame's shorter side, in the GazeCapture frame it corresponds to
    (:func:`~tinytracker.data.geometry.camera_face_grid`).
    ``face_box`` may be ``None`` only for a model that takes no field of the face
    (:func:`needs_face`): the ``frame`` field is the whole frame, resized as the IMX500's ISP
    scales its full-frame ROI (:func:`~tinytracker.data.transforms.resize`, the filter that
    ``tinytracker.deploy.roi.emulate_isp`` uses).
    """
    height, width = frame.shape[:2]
    if face_box is None:
        if needs_face(spec.inputs):
            raise ValueError(f"the model takes {', '.join(spec.inputs)}: it needs a face box")
        return sample_inputs({"frame": frame}, (), spec)
    crops = frame_crops(frame, face_box, spec.inputs, left_eye, right_eye)
    out = sample_inputs(crops, camera_face_grid(face_box, (width, height), camera_fov_deg), spec)
    if "face_box" in spec.inputs:
        out["face_box"] = normalised_face_box(face_box, (width, height))
    return out
