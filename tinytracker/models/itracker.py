"""iTracker (Krafka et al., "Eye Tracking for Everyone", CVPR 2016), the GazeCapture baseline.

Follows the public PyTorch port (CSAILVision/GazeCapture ``pytorch/ITrackerModel.py``) layer for
layer, with its nesting (``eyeModel`` -> ``eye_tower``, ``faceModel`` -> ``face_branch``,
``gridModel`` -> ``grid_branch``, ``eyesFC`` -> ``eyes_fc``). One deliberate difference: local
response normalization is ``nn.LocalResponseNorm`` (symmetric 5-channel window) instead of the
legacy ``nn.CrossMapLRN2d``, whose implementation sums a 6-channel window for most channels;
outputs differ by ~1e-3 relative with the paper's alpha=1e-4.
"""

from __future__ import annotations

import torch
from torch import nn

# AlexNet-style LRN constants of the original Caffe model (CVPR 2016, Sec. 4.1).
_LRN = {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 1.0}
_TOWER_CHANNELS = 64  # output channels of each conv tower
_REFERENCE_IMAGE_SIZE = 224
_REFERENCE_FEATURE_SIDE = 12  # 224 -> 54 -> 26 -> 26 -> 12 -> 12 -> 12

class ConvTower(nn.Module):
    """AlexNet-like tower shared by the eyes and (with its own weights) the face.

    ``(B, 3, S, S)`` -> flattened ``(B, 64 * s * s)``; ``s = 12`` at ``S = 224``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=11, stride=4, padding=0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LocalResponseNorm(**_LRN),
            # groups=2: the two-GPU split of the original AlexNet, kept for weight compatibility
            nn.Conv2d(96, 256, kernel_size=5, stride=1, padding=2, groups=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.LocalResponseNorm(**_LRN),
            nn.Conv2d(256, 384, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, _TOWER_CHANNELS, kernel_size=1, stride=1, padding=0),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.features(x), 1)


class FaceBranch(nn.Module):
    """Face tower + FC 128 -> 64: ``(B, 3, S, S)`` -> ``(B, 64)``."""

    def __init__(self, flat_features: int) -> None:
        super().__init__()
        self.conv = ConvTower()
        self.fc = nn.Sequential(
            nn.Linear(flat_features, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 64),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class GridBranch(nn.Module):
    """Face-grid MLP: ``(B, grid_size**2)`` -> ``(B, 128)``."""

    def __init__(self, grid_size: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(grid_size * grid_size, 256),
            nn.ReLU(inplace=True),
            nn.Linear(256, 128),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ITracker(nn.Module):
    """iTracker: eyes, face and face grid -> gaze point ``(B, 2)`` in cm (camera coordinates).

    Inputs: ``face``, ``eye_left``, ``eye_right`` ``(B, 3, S, S)`` and ``face_grid``
    ``(B, grid_size**2)`` or ``(B, 1, grid_size, grid_size)`` (the 25x25 binary mask of the
    GazeCapture release).

    Args:
        image_size: side ``S`` of the square crops (224 in the paper). Other sizes change the
            flattened tower output; sizes below 35 leave nothing for the second max-pool and
            are rejected.
        grid_size: side of the face grid (25 in GazeCapture).
    """

    input_keys = ("face", "eye_left", "eye_right", "face_grid")
    feature_dim = 128  # ``features``: the hidden layer of ``fc``

    def __init__(self, image_size: int = 224, grid_size: int = 25) -> None:
        super().__init__()
        for key, value in (("image_size", image_size), ("grid_size", grid_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive integer, got {value!r}")
        self.image_size = image_size
        self.grid_size = grid_size
        self.eye_tower = ConvTower()
        flat = _tower_output_size(self.eye_tower, image_size)
        self.face_branch = FaceBranch(flat)
        self.grid_branch = GridBranch(grid_size)
        self.eyes_fc = nn.Sequential(nn.Linear(2 * flat, 128), nn.ReLU(inplace=True))
        self.fc = nn.Sequential(
            nn.Linear(128 + 64 + 128, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, 2),
        )

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each input, in ``input_keys`` order."""
        image = (3, self.image_size, self.image_size)
        return {
            "face": image,
            "eye_left": image,
            "eye_right": image,
            "face_grid": (self.grid_size * self.grid_size,),
        }

    def features(
        self,
        face: torch.Tensor,
        eye_left: torch.Tensor,
        eye_right: torch.Tensor,
        face_grid: torch.Tensor,
    ) -> torch.Tensor:
        """Penultimate features ``(B, 128)``: the output of ``fc``'s hidden layer and ReLU."""
        grid = torch.flatten(face_grid, 1)
        if grid.shape[1] != self.grid_size * self.grid_size:
            raise ValueError(
                f"face_grid must hold {self.grid_size}x{self.grid_size} cells "
                f"(grid_size={self.grid_size}), got shape {tuple(face_grid.shape)}"
            )
        eyes = torch.cat((self.eye_tower(eye_left), self.eye_tower(eye_right)), dim=1)
        x = torch.cat(
            (self.eyes_fc(eyes), self.face_branch(face), self.grid_branch(grid.to(face.dtype))),
            dim=1,
        )
        return self.fc[1](self.fc[0](x))

    def forward_with_features(
        self,
        face: torch.Tensor,
        eye_left: torch.Tensor,
        eye_right: torch.Tensor,
        face_grid: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the penultimate features ``(B, 128)`` of one pass."""
        feats = self.features(face, eye_left, eye_right, face_grid)
        return self.fc[2](feats), feats

    def forward(
        self,
        face: torch.Tensor,
        eye_left: torch.Tensor,
        eye_right: torch.Tensor,
        face_grid: torch.Tensor,
    ) -> torch.Tensor:
        """Crops ``(B, 3, S, S)`` x3 and face grid -> gaze ``(B, 2)`` in cm."""
        return self.forward_with_features(face, eye_left, eye_right, face_grid)[0]


def _tower_output_size(tower: ConvTower, image_size: int) -> int:
    """Flattened tower output for ``image_size`` crops; one dummy pass unless at 224."""
    if image_size == _REFERENCE_IMAGE_SIZE:
        return _TOWER_CHANNELS * _REFERENCE_FEATURE_SIDE**2
    try:
        with torch.no_grad():  # the tower has no batch norm, so the pass changes no state
            out = tower(torch.zeros(1, 3, image_size, image_size))
    except RuntimeError as err:
        raise ValueError(
            f"image_size={image_size} is too small for iTracker's conv towers (11x11/4 conv and "
            f"two 3x3/2 max-pools need at least 35 pixels; the paper uses 224): {err}"
        ) from err
    return out.shape[1]
