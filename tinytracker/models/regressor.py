"""What TinyTracker and TinyTrackerS share: input stacking and checks, the output head, and the
ways to give the net the face's position (``position``, the ``model.position`` config key).

Both map a face crop to the gaze point in centimetres, GazeCapture camera coordinates
``(XCam, YCam)``. ``position`` says how the net learns where the face is in the frame:

* ``input``: the 2-channel grid embedding stacked on the face (the papers' design; two input
  tensors, so not for the IMX500, whose ISP fills one).
* ``none``: face pixels only.
* ``late``: the face box ``(x0, y0, x1, y1)`` in [0, 1] of the frame (the ROI the host set)
  joins after the sensor part: :meth:`GazeRegressor.sensor_net` maps the face to the
  penultimate features ``(B, feature_dim)``, and :meth:`GazeRegressor.host_head` (float, for
  the host's CPU) maps ``cat(features, face_box)`` to gaze: a Linear/ReLU MLP, by default
  after the box modulates the features (:class:`LateHead`, ``late_film``).
* ``frame``: the whole camera frame scaled to ``S x S``, with constant coordinate channels
  (x and y over [-1, 1]: the grid embedding of a face filling the frame) baked into the net.
"""

from __future__ import annotations

import torch
from torch import nn

from tinytracker.config import POSITIONS
from tinytracker.models.tf_padding import use_tf_same_padding

GRID_EMBEDDING_CHANNELS = 2
OUTPUT_ACTIVATIONS = ("none", "tanh")
PADDING_MODES = ("symmetric", "tf_same")
# The released TinyTrackerS file concatenates this constant grid (x and y linspaces over
# [-0.1, 0.1], the authors' ``bakedModel``) to the grey input; see TinyTrackerS.
BAKED_GRID_RANGE = (-0.1, 0.1)

MIN_IMAGE_SIZE = 32
FACE_BOX_SIZE = 4  # (x0, y0, x1, y1)
# The frame spans the whole frame: the grid embedding of a full-frame face box.
FRAME_GRID_RANGE = (-1.0, 1.0)
_INPUT_KEYS = {"input": ("face", "grid_embedding"), "none": ("face",),
               "late": ("face", "face_box"), "frame": ("frame",)}


class LateHead(nn.Module):
    """The host head of ``position=late`` with ``late_film``: the box modulates the features.

    ``x = cat(features, face_box)``; with ``b = 2 face_box - 1`` (the box in [-1, 1]) and
    ``(gamma, beta) = film(b)`` (one Linear, ``4 -> 2 feature_dim``, initialised to zero)::

        gaze = mlp(cat(features * (1 + gamma) + beta, b))

    Where the face is sets how its appearance maps to the screen (the gaze point is the eye's
    position plus its distance times the gaze direction: a product of what the box and the
    pixels tell), which a ReLU MLP on ``cat(features, box)`` fits poorly: on the default
    synthetic set, 1.75 cm against 1.20 cm with the modulation (one seed each, 20 epochs, the
    same recipe; ``position=input`` 1.20 cm). numpy twin: :mod:`tinytracker.deploy.head`.
    """

    def __init__(self, feature_dim: int, late_hidden: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.film = nn.Linear(FACE_BOX_SIZE, 2 * feature_dim)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        width = feature_dim + FACE_BOX_SIZE
        self.mlp = (nn.Sequential(nn.Linear(width, late_hidden), nn.ReLU(),
                                  nn.Linear(late_hidden, 2))
                    if late_hidden else nn.Sequential(nn.Linear(width, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features, box = x[:, :self.feature_dim], x[:, self.feature_dim:]
        b = box * 2.0 - 1.0  # float constants: torch.export lifts ints as int64 tensors
        gamma, beta = self.film(b).chunk(2, dim=1)
        return self.mlp(torch.cat((features * (1.0 + gamma) + beta, b), dim=1))


def resolve_position(position: str | None, grid_embedding: bool) -> str:
    """``position``, checked; ``None`` (checkpoints from before it existed): from
    ``grid_embedding``, which must agree with it (true only for ``input``)."""
    if position is None:
        return "input" if grid_embedding else "none"
    if position not in POSITIONS:
        raise ValueError(f"position (model.position) must be one of {POSITIONS}, "
                         f"got {position!r}")
    if grid_embedding != (position == "input"):
        raise ValueError(f"grid_embedding={grid_embedding} does not fit position={position!r}: "
                         "the grid embedding is an input only for position=input (set "
                         f"data.grid_embedding={str(position == 'input').lower()})")
    return position


class SensorNet(nn.Module):
    """The part of a net that runs on the sensor, as a module of its own (for export).

    ``input_keys`` / ``input_shapes``: the sensor inputs (``face``, or ``frame``; both inputs
    for ``position=input``). Its output is the gaze ``(B, 2)`` in cm, or for ``late`` the
    features ``(B, feature_dim)``. It shares the owner's layers (not a copy).
    """

    def __init__(self, owner: nn.Module) -> None:
        super().__init__()
        self.owner = owner
        self.input_keys: tuple[str, ...] = tuple(owner.sensor_input_keys)
        self.input_shapes = {k: owner.input_shapes[k] for k in self.input_keys}

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.owner.sensor_forward(*inputs)


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
        position: str | None = None,
    ) -> None:
        super().__init__()
        self.position = resolve_position(position, grid_embedding)
        if self.position == "frame":
            grid_embedding = True  # the baked coordinate channels, not an input
        if self.position == "late" and output_activation != "none":
            raise ValueError("position='late' needs output_activation='none': the host head "
                             "(Linear/ReLU) is the net's last step")
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
        self.input_keys: tuple[str, ...] = _INPUT_KEYS[self.position]
        if self.position == "frame":
            self._bake_grid_embedding(FRAME_GRID_RANGE)

    @property
    def stacked_channels(self) -> int:
        """Channels after stacking the optional grid embedding onto the face."""
        return self.in_channels + (GRID_EMBEDDING_CHANNELS if self.grid_embedding else 0)

    @property
    def input_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shape of each input, in ``input_keys`` order (for ``footprint``, export)."""
        image = (self.in_channels, self.image_size, self.image_size)
        shapes = {"grid_embedding": (GRID_EMBEDDING_CHANNELS, self.image_size, self.image_size),
                  "face": image, "frame": image, "face_box": (FACE_BOX_SIZE,)}
        return {k: shapes[k] for k in self.input_keys}

    @property
    def sensor_input_keys(self) -> tuple[str, ...]:
        """The inputs of the on-sensor graph: ``input_keys`` less the host's ``face_box``."""
        return tuple(k for k in self.input_keys if k != "face_box")

    def _head(self, feature_dim: int, late_hidden: int, late_film: bool = False) -> nn.Module:
        """The output head: ``Linear(feature_dim, 2)``; for ``late``, the host head on
        ``cat(features, face_box)``: ``late_hidden`` ReLU units, then 2 (0: one Linear), after
        the box's modulation of the features with ``late_film`` (:class:`LateHead`)."""
        if self.position != "late":
            return nn.Linear(feature_dim, 2)
        if late_hidden:
            check_positive_int("late_hidden", late_hidden)
        if late_film:
            return LateHead(feature_dim, late_hidden)
        width = feature_dim + FACE_BOX_SIZE
        if not late_hidden:
            return nn.Sequential(nn.Linear(width, 2))
        return nn.Sequential(nn.Linear(width, late_hidden), nn.ReLU(), nn.Linear(late_hidden, 2))

    def sensor_net(self) -> nn.Module:
        """The part that runs on the IMX500 (:class:`SensorNet`, sharing these layers)."""
        return SensorNet(self)

    def host_head(self) -> nn.Module | None:
        """``late``: the host head, ``cat(features, face_box) (B, D+4) -> (B, 2)`` cm; else
        ``None`` (the sensor part outputs gaze itself)."""
        return self.head if self.position == "late" else None

    def sensor_forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The sensor part: ``late`` -> features ``(B, feature_dim)``; else ``forward``."""
        if self.position == "late":
            return self.features(*inputs)
        return self(*inputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _apply_padding_mode(self) -> None:
        """Subclasses call this once their layers are built: ``padding="tf_same"`` wraps the
        strided blocks in TF "SAME" padding."""
        if self.padding == "tf_same":
            use_tf_same_padding(self)

    def _bake_grid_embedding(self, grid_range: tuple[float, float] = BAKED_GRID_RANGE) -> None:
        """Take the grid embedding from the ``baked_grid`` buffer instead of an input."""
        if not self.grid_embedding or self.position not in ("input", "frame"):
            raise ValueError("baked_grid_embedding=True needs grid_embedding=True and "
                             f"position='input' (the released file), got {self.position!r}")
        side = self.image_size
        line = torch.linspace(*grid_range, side)
        self.baked_grid = torch.stack((line.expand(side, side), line[:, None].expand(side, side)))
        if self.position == "input":
            self.input_keys = ("face",)

    def features(
        self, face: torch.Tensor, grid_embedding: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Penultimate features ``(B, feature_dim)`` (after the hidden FC and its ReLU) of the
        image input (``face``, or ``frame``) [and the grid embedding, ``position=input``]."""
        return self.embed(self._stack_inputs(face, grid_embedding))

    def forward_with_features(self, *inputs: torch.Tensor | None
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gaze ``(B, 2)`` in cm and the penultimate features ``(B, feature_dim)`` of one pass
        (per-person calibration regresses on the features). ``inputs``: ``input_keys``."""
        if self.position == "late":
            face, face_box = _late_inputs(inputs)
            feats = self.features(face)
            return self.head(torch.cat((self.dropout(feats), face_box), dim=1)), feats
        feats = self.features(*inputs)
        return self.gaze_from_features(feats), feats

    def gaze_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Gaze ``(B, 2)`` cm from the penultimate features, for every position but ``late``
        (whose head also reads the face box)."""
        out = self.head(self.dropout(feats))
        if self.output_activation == "tanh":
            # Authors' scheme: bounded output, times a fixed range (30 cm TinyTracker, 10 cm S)
            out = torch.tanh(out) * self.output_scale_cm
        return out

    def forward(self, *inputs: torch.Tensor | None) -> torch.Tensor:
        """The ``input_keys`` fields -> gaze ``(B, 2)`` cm: ``face (B, in_channels, S, S)``
        [+ ``grid_embedding (B, 2, S, S)`` | ``face_box (B, 4)``], or ``frame``."""
        return self.forward_with_features(*inputs)[0]

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


def _late_inputs(inputs: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    if len(inputs) != 2 or inputs[1] is None:
        raise ValueError("position='late' takes face (B, C, S, S) and face_box (B, 4)")
    face, face_box = inputs
    if face_box.dim() != 2 or face_box.shape[1] != FACE_BOX_SIZE:
        raise ValueError(f"face_box must be (B, {FACE_BOX_SIZE}) = (x0, y0, x1, y1), got "
                         f"{tuple(face_box.shape)}")
    return face, face_box.to(face.dtype)


def check_positive_int(key: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key} must be a positive integer, got {value!r}")
