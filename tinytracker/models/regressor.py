"""What TinyTracker and TinyTrackerS share: input stacking and checks, the output head.

Both map a face crop (optionally with the 2-channel grid embedding stacked on the channels) to
the gaze point in centimetres, GazeCapture camera coordinates ``(XCam, YCam)``.
"""

from __future__ import annotations

import torch
from torch import nn

from tinytracker.models.tf_padding import use_tf_same_padding

GRID_EMBEDDING_CHANNELS = 2
OUTPUT_ACTIVATIONS = ("none", "tanh")
PADDING_MODES = ("symmetric", "tf_same")
# The released TinyTrackerS file concatenates this constant grid (x and y linspaces over
# [-0.1, 0.1], the authors' ``bakedModel``) to the grey input; see TinyTrackerS.
BAKED_GRID_RANGE = (-0.1, 0.1)

MIN_IMAGE_SIZE = 32


class GazeRegressor(nn.Module):
    """Shared input handling and output head of TinyTracker and TinyTrackerS.

    Subclasses build ``fc`` (the feature MLP), ``dropout`` and ``head`` (feature -> 2) and
    implement ``embed`` (stacked input -> ``(B, feature_dim)``).
    """

    feature_dim: int

    def __init__(
        self,
        in_channels: int,
        grid_embedding: bool,
        image_size: int,
        output_activation: str,
        output_scale_cm: float,
        padding: str = "symmetric",
    ) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("image_size", image_size)
        if image_size < MIN_IMAGE_SIZE:
            # Five stride-2 stages: below 32 px the last stages see a single pixel.
            raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
            )
        if output_scale_cm <= 0:
            raise ValueError(f"output_scale_cm must be > 0, got {output_scale_cm}")
        if padding not in PADDING_MODES:
            raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
        self.padding = padding
        # A constant grid embedding baked into the model (TinyTrackerS' released file); None
        # buffers are not saved, so checkpoints without one are unchanged.
        self.register_buffer("baked_grid", None)
        self.in_channels = in_channels
        self.grid_embedding = grid_embedding
        self.image_size = image_size
        self.output_activation = output_activation
        self.output_scale_cm = float(output_scale_cm)
        self.input_keys: tuple[str, ...] = (
            ("face", "grid_embedding") if grid_embedding else ("face",)
        )

    @property
    def stacked_channels(self) -> int:
        """Channels after stacking the optional grid embedding onto the face."""
        return self.in_channels + (GRID_EMBEDDING_CHANNELS if self.grid_embedding else 0)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each input, in ``input_keys`` order (for ``footprint``, export)."""
        shapes = {"face": (self.in_channels, self.image_size, self.image_size)}
        if "grid_embedding" in self.input_keys:
            shapes["grid_embedding"] = (GRID_EMBEDDING_CHANNELS, self.image_size, self.image_size)
        return shapes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply_padding_mode(self) -> None:
        """Subclasses call this once their layers are built: ``padding="tf_same"`` wraps the
        strided blocks in TF "SAME" padding."""
        if self.padding == "tf_same":
            use_tf_same_padding(self)

    def _bake_grid_embedding(self) -> None:
        """Take the grid embedding from the ``baked_grid`` buffer instead of an input."""
        if not self.grid_embedding:
            raise ValueError("baked_grid_embedding=True needs grid_embedding=True")
        side = self.image_size
        line = torch.linspace(*BAKED_GRID_RANGE, side)
        self.baked_grid = torch.stack((line.expand(side, side), line[:, None].expand(side, side)))
        self.input_keys = ("face",)

    def features(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)`` (after the hidden FC and its ReLU)."""
        return self.embed(self._stack_inputs(face, grid_embedding))

    def forward_with_features(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the penultimate features ``(B, feature_dim)`` of one pass
        (per-person calibration regresses on the features)."""
        feats = self.features(face, grid_embedding)
        out = self.head(self.dropout(feats))
        if self.output_activation == "tanh":
            # Authors' scheme: bounded output, times a fixed range (30 cm TinyTracker, 10 cm S)
            out = torch.tanh(out) * self.output_scale_cm
        return out, feats

    def forward(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``face (B, in_channels, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> ``(B, 2)`` cm."""
        return self.forward_with_features(face, grid_embedding)[0]

    def _stack_inputs(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None
    ) -> torch.Tensor:
        if face.dim() != 4 or face.shape[1] != self.in_channels:
            raise ValueError(
                f"face must be (B, {self.in_channels}, H, W) (in_channels={self.in_channels}), "
                f"got {tuple(face.shape)}"
            )
        if not self.grid_embedding:
            if grid_embedding is not None:
                raise ValueError(
                    "got a grid_embedding but the model was built with grid_embedding=False"
                )
            return face
        if grid_embedding is None and self.baked_grid is not None:
            grid_embedding = self.baked_grid.expand(face.shape[0], -1, -1, -1)
        if grid_embedding is None:
            raise ValueError(
                "the model was built with grid_embedding=True: pass grid_embedding (B, 2, H, W)"
            )
        if grid_embedding.shape[1] != GRID_EMBEDDING_CHANNELS:
            raise ValueError(
                f"grid_embedding must have {GRID_EMBEDDING_CHANNELS} channels, "
                f"got {tuple(grid_embedding.shape)}"
            )
        return torch.cat((face, grid_embedding), dim=1)


def check_positive_int(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
