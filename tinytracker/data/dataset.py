"""Torch dataset over the processed GazeCapture layout, yielding named batch fields.

Each sample is a dict:

* ``face``: float32 ``(C, S, S)``, ``C`` = 1 (grey) or 3 (RGB), ``S`` = ``face_size``
* ``eye_left`` / ``eye_right``: float32 ``(3, E, E)`` (only when requested, e.g. iTracker)
* ``face_grid``: float32 ``(625,)`` 25x25 mask, as the public iTracker loader
* ``grid_embedding``: float32 ``(2, S, S)`` (only when requested)
* ``face_box``: float32 ``(4,)`` ``(x0, y0, x1, y1)``, the inference ROI of the face in [0, 1]
  of the frame (:func:`~tinytracker.data.geometry.normalised_face_box`; only when requested)
* ``frame``: float32 ``(C, S, S)``, the whole camera frame stretched to ``S x S`` as the
  IMX500's ISP scales its full-frame ROI (only when requested)
* ``gaze_cm``: float32 ``(2,)`` ``(XCam, YCam)`` in centimetres, camera coordinates
* ``rec_num``, ``frame_index``: int64 ids of the recording (one subject) and frame
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from tinytracker.data.geometry import (
    face_grid_box,
    face_grid_mask,
    grid_embedding,
    normalised_face_box,
)
from tinytracker.data.processed import DataFormatError, ProcessedIndex, crop_path
from tinytracker.data.spec import SampleSpec
from tinytracker.data.transforms import AugmentConfig, build_augment, resize, to_tensor_layout

log = logging.getLogger(__name__)

IMAGE_FIELDS = ("face", "eye_left", "eye_right", "frame")
# Image fields at data.face_size, in grey when data.grey (the others are iTracker's RGB eyes).
FACE_SIZED = ("face", "frame")
ALL_FIELDS = (*IMAGE_FIELDS, "face_grid", "grid_embedding", "face_box")


def decode_jpeg(path) -> np.ndarray:
    """Read a JPEG as RGB uint8, raising :class:`DataFormatError` naming the file."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    if data is None:
        raise DataFormatError(f"{path} does not exist (metadata.mat lists this frame)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataFormatError(f"{path} is not a readable JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_resized_crop(root: Path, rec: int, frame: int, name: str, size: int,
                      interpolation: str = "area") -> np.ndarray:
    """The stored crop ``name`` of one frame, decoded and resized to ``size``: RGB uint8.

    The one place where crops become model-sized pixels: the JPEG path calls it per sample,
    ``tinytracker.data.pack`` once per frame, so both paths feed identical pixels.
    ``interpolation``: the spec's filter (:func:`~tinytracker.data.transforms.resize`).
    """
    return resize(decode_jpeg(crop_path(root, rec, frame, name)), size, interpolation)


class GazeDataset(Dataset):
    """One split of a processed directory.

    With ``skip_bad`` an unreadable crop is logged, counted in ``bad_count`` and replaced by
    the next readable sample, instead of stopping the run.
    """

    def __init__(
        self,
        index: ProcessedIndex,
        spec: SampleSpec,
        augment: AugmentConfig | None = None,
        skip_bad: bool = False,
    ) -> None:
        unknown = set(spec.inputs) - set(ALL_FIELDS)
        if unknown:
            raise ValueError(f"unknown input field(s) {sorted(unknown)}; known: {ALL_FIELDS}")
        self.index = index
        self.spec = spec
        self.augment = build_augment(augment)
        self.skip_bad = skip_bad
        self.bad_count = 0

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        for attempt in range(len(self)):
            j = (i + attempt) % len(self)
            try:
                return self._load(j)
            except DataFormatError as err:
                if not self.skip_bad:
                    raise
                self.bad_count += 1
                log.warning("skipping bad sample (%d so far): %s", self.bad_count, err)
        raise DataFormatError(f"no readable sample left in {self.index.root}")

    def _load(self, i: int) -> dict[str, torch.Tensor]:
        idx, spec = self.index, self.spec
        rec, frame = int(idx.rec_num[i]), int(idx.frame_index[i])
        grid = idx.face_grid[i]
        sample: dict[str, torch.Tensor] = {
            "gaze_cm": torch.from_numpy(idx.gaze_cm[i].copy()),
            "face_grid": torch.from_numpy(face_grid_mask(grid)),
            "rec_num": torch.tensor(rec),
            "frame_index": torch.tensor(frame),
        }
        for name in IMAGE_FIELDS:
            if name not in spec.inputs:
                continue
            image = self._image(i, name, spec.image_size(name))
            if self.augment is not None:
                image = self.augment(image=image)["image"]
            grey = spec.grey and name in FACE_SIZED
            sample[name] = torch.from_numpy(to_tensor_layout(image, grey, spec.mean, spec.std))
        if "grid_embedding" in spec.inputs:
            emb = grid_embedding(grid, spec.face_size, spec.face_size,
                                 convention=spec.grid_convention)
            sample["grid_embedding"] = torch.from_numpy(emb)
        if "face_box" in spec.inputs:
            sample["face_box"] = torch.from_numpy(face_boxes(idx, [i])[0])
        return sample

    def _image(self, i: int, name: str, size: int) -> np.ndarray:
        """RGB uint8 ``size x size`` pixels of field ``name`` of row ``i``, before augmentation."""
        idx = self.index
        return load_resized_crop(idx.root, int(idx.rec_num[i]), int(idx.frame_index[i]), name,
                                 size, self.spec.interpolation)


_warned_grid_boxes: set[str] = set()


def face_boxes(index: ProcessedIndex, rows: list[int]) -> np.ndarray:
    """The ``face_box`` field of ``rows``: float32 ``(len(rows), 4)``.

    Exact (the camera's ROI) when ``metadata.mat`` records the face box in pixels and the
    frame size (our ``prepare``); else the face-grid box, to 1/25 of the frame, with a warning
    once per directory (a directory of the public ``prepareDataset.py``: prepare the raw data
    with ``python -m tinytracker.data.prepare`` for exact boxes).
    """
    if index.face_box_px is not None and index.frame_size is not None:
        return np.stack([normalised_face_box(index.face_box_px[r], index.frame_size[r])
                         for r in rows])
    if str(index.root) not in _warned_grid_boxes:
        _warned_grid_boxes.add(str(index.root))
        log.warning("%s has no labelFaceBox/labelFrameSize: face_box comes from the 25x25 face "
                    "grid (coarser than the camera's ROI); prepare the raw data with python -m "
                    "tinytracker.data.prepare for exact boxes", index.root / "metadata.mat")
    return np.stack([face_grid_box(index.face_grid[r]) for r in rows])


def collate(batch: list[dict[str, torch.Tensor]] | dict[str, torch.Tensor]):
    """DataLoader ``collate_fn``: stacks samples, and passes through a batch that a dataset's
    ``__getitems__`` (the packed format) already assembled."""
    return batch if isinstance(batch, dict) else default_collate(batch)


def input_shapes(spec: SampleSpec) -> dict[str, tuple[int, ...]]:
    """Per-sample shape of every field a model may consume (without the batch dimension)."""
    face_c = 1 if spec.grey else 3
    return {
        "face": (face_c, spec.face_size, spec.face_size),
        "eye_left": (3, spec.eye_size, spec.eye_size),
        "eye_right": (3, spec.eye_size, spec.eye_size),
        "face_grid": (625,),
        "grid_embedding": (2, spec.face_size, spec.face_size),
        "face_box": (4,),
        "frame": (face_c, spec.face_size, spec.face_size),
    }
