"""Image transforms: decoding, resizing, normalisation, and training augmentation.

Augmentation uses albumentations and is photometric plus a small geometric jitter. Large
geometric changes are deliberately absent: where the face and eyes sit inside the crop carries
gaze information (and the face grid / grid embedding would no longer match the pixels).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch


@dataclass
class AugmentConfig:
    """Training augmentation; every limit is multiplied by ``strength`` (0 disables all)."""

    enabled: bool = True
    strength: float = 1.0
    brightness_limit: float = 0.2
    contrast_limit: float = 0.2
    hue_shift_limit: float = 5.0  # degrees of hue (albumentations units)
    sat_shift_limit: float = 15.0
    blur_p: float = 0.2
    noise_p: float = 0.2
    noise_std: float = 0.03  # fraction of full range
    shift_limit: float = 0.03  # fraction of the crop size
    scale_limit: float = 0.03
    rotate_limit_deg: float = 3.0


class SeededCompose(A.Compose):
    """An albumentations pipeline that draws from the run's seed.

    Albumentations keeps its own generators, seeded from OS entropy unless ``Compose(seed=)``
    says otherwise (its "Reproducibility" guide), so ``seed_everything`` does not reach them
    and two runs of one seed trained on different augmentations. Here the pipeline is seeded
    from ``torch.initial_seed()`` of the process that applies it, the first time it does:
    the run's seed in the main process (``num_workers=0``); in a DataLoader worker, torch's
    seed of that worker (a base drawn from the run's generator, plus the worker id), so
    workers draw differently from each other and every run of a seed draws the same.
    """

    _seeded_with: tuple[int, int] | None = None

    def __call__(self, *args: Any, **data: Any) -> dict[str, Any]:
        key = (os.getpid(), torch.initial_seed())
        if key != self._seeded_with:
            self.set_random_seed(key[1] % 2**32)
            self._seeded_with = key
        return super().__call__(*args, **data)

    def random_state(self) -> dict[str, Any]:
        """The draws so far, of the pipeline and of each transform (plain data, for a
        checkpoint): :meth:`set_random_state` continues from here."""
        return {"numpy": [t.random_generator.bit_generator.state for t in self._rngs()],
                "python": [t.py_random.getstate() for t in self._rngs()]}

    def set_random_state(self, state: dict[str, Any]) -> None:
        """Continue the draws of :meth:`random_state` (in this process, without reseeding)."""
        for t, np_state, py_state in zip(self._rngs(), state["numpy"], state["python"],
                                         strict=True):
            t.random_generator.bit_generator.state = np_state
            version, internal, gauss = py_state
            t.py_random.setstate((version, tuple(internal), gauss))
        self._seeded_with = (os.getpid(), torch.initial_seed())

    def _rngs(self) -> list[Any]:
        return [self, *self.transforms]


def build_augment(cfg: AugmentConfig | None) -> A.Compose | None:
    """Albumentations pipeline from config, or ``None`` when augmentation is off."""
    if cfg is None or not cfg.enabled or cfg.strength <= 0:
        return None
    s = float(cfg.strength)
    return SeededCompose(
        [
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness_limit * s, contrast_limit=cfg.contrast_limit * s
            ),
            A.HueSaturationValue(
                hue_shift_limit=cfg.hue_shift_limit * s,
                sat_shift_limit=cfg.sat_shift_limit * s,
                val_shift_limit=0,
            ),
            A.GaussianBlur(blur_limit=(3, 5), p=min(1.0, cfg.blur_p * s)),
            A.GaussNoise(std_range=(0.0, cfg.noise_std * s), p=min(1.0, cfg.noise_p * s)),
            A.Affine(
                translate_percent=(-cfg.shift_limit * s, cfg.shift_limit * s),
                scale=(1 - cfg.scale_limit * s, 1 + cfg.scale_limit * s),
                rotate=(-cfg.rotate_limit_deg * s, cfg.rotate_limit_deg * s),
                border_mode=cv2.BORDER_CONSTANT,
                p=0.5,
            ),
        ]
    )


def resize(image: np.ndarray, size: int, interpolation: str = "area") -> np.ndarray:
    """Resize an ``HxWxC`` uint8 image to ``size x size``.

    ``interpolation`` (:data:`~tinytracker.data.spec.INTERPOLATIONS`): ``"area"`` (ours) uses
    the area filter when shrinking and bilinear when enlarging; ``"bilinear"`` is bilinear both
    ways without antialiasing, with half-pixel centres, as ``tf.image.resize(image, shape)``
    in the TinyTracker authors' training pipeline (src/ITrackerDataTF.py); OpenCV rounds the
    result to uint8 where TF keeps float, a difference of at most half a grey level.
    """
    if interpolation not in ("area", "bilinear"):
        raise ValueError(f"interpolation must be 'area' or 'bilinear', got {interpolation!r}")
    if image.shape[0] == size and image.shape[1] == size:
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    interp = cv2.INTER_AREA if shrink and interpolation == "area" else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interp)


def to_tensor_layout(
    image: np.ndarray, grey: bool, mean: float, std: float
) -> np.ndarray:
    """uint8 ``HxWx3`` RGB -> float32 ``CxHxW`` with ``(x/255 - mean) / std``.

    Grey uses ITU-R BT.601 luma, as OpenCV's ``COLOR_RGB2GRAY``.
    """
    if grey:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    out = image.astype(np.float32).transpose(2, 0, 1)
    out *= 1.0 / 255.0
    out -= mean
    out *= 1.0 / std
    return out


def to_tensor_layout_batch(
    images: np.ndarray, grey: bool, mean: float, std: float
) -> np.ndarray:
    """:func:`to_tensor_layout` of a uint8 ``BxHxWx3`` batch at once -> float32 ``BxCxHxW``.

    The same float32 operations in the same order, so the values equal those of stacking
    per-image results exactly.
    """
    if grey:
        images = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in images])[..., None]
    out = images.transpose(0, 3, 1, 2).astype(np.float32, order="C")
    out *= 1.0 / 255.0
    out -= mean
    out *= 1.0 / std
    return out
