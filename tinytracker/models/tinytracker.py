"""TinyTracker (arXiv:2307.07813) and TinyTrackerS (arXiv:2308.12313) gaze regressors.

Both map a face crop (optionally with TinyTracker's 2-channel grid embedding stacked on the
channels) to the gaze point in centimetres, GazeCapture camera coordinates ``(XCam, YCam)``.

The architectures follow the authors' released TFLite files layer for layer (``TinyTracker.tflite``
and ``TinyTrackerS.tflite`` of the public ``pbonazzi/tinytracker`` repository; their Keras
definitions are ``src/TinyTrackerTF.py`` and ``src/TinyTrackerS.py``). The operator <-> module
tables of those files are in :mod:`tinytracker.import_tflite.layer_tables`, next to the importer
that relies on them. Batch norm is folded into the convolutions of the TFLite files, strided
convolutions use TF "SAME" padding (``padding="tf_same"``, :mod:`tinytracker.models.tf_padding`),
and TinyTracker's dense layer reads an NHWC-flattened tensor: the importer handles all three.
"""

from __future__ import annotations

import torch
from torch import nn

from tinytracker.models.backbones import MobileNetV3SmallMinimalistic, TinyTrackerSBackbone
from tinytracker.models.regressor import GazeRegressor


class TinyTracker(GazeRegressor):
    """TinyTracker (Bonazzi et al., arXiv:2307.07813): 1x1 conv -> MobileNetV3-Small -> MLP.

    ``face (B, in_channels, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> gaze ``(B, 2)`` in cm.
    ``features`` gives the 128-d vector after ``fc`` (FC 128 + ReLU).

    Footprint at 112x112 RGB: 434,536 parameters (446,648 with BN running statistics, Keras'
    "total params") against the paper's 455k, and 13.99M MACs against its 11.8M. No input size
    gives 11.8M with the standard count: the last stage is ceil(S/32) wide, so the count jumps
    from 9.40M at 96 to 13.14M at 97. Counting only the 1x1 convolutions and dense layers gives
    11.67M, which may be what the paper counted. The layer table itself is the released one.

    The released ``TinyTracker.tflite``'s operators and the module each maps to:
    :mod:`tinytracker.import_tflite.layer_tables` (``TINYTRACKER``).

    Backbone convolutions have no bias (Keras MobileNetV3, ``use_bias=False``); their TFLite
    biases are the folded batch norms. The Keras model was built with
    ``include_preprocessing=False``, so there is no rescaling layer to reproduce.

    Args:
        in_channels: image channels, 3 (RGB) or 1 (grey).
        grid_embedding: also take the 2-channel grid embedding (the released file uses it).
        image_size: side of the square input; sets the size of the first FC layer
            (``2 * ceil(image_size / 32) ** 2`` inputs).
        width_mult: MobileNetV3 alpha, with Keras' channel rounding.
        output_activation: ``"none"`` (linear output in cm) or ``"tanh"``
            (``output_scale_cm * tanh``, the authors' choice).
        output_scale_cm: range of the tanh output; the authors use 30 cm.
        dropout: dropout probability before ``head`` (0 in the paper).
        padding: ``"symmetric"`` (PyTorch) or ``"tf_same"`` (TF "SAME" for strided
            convolutions, as in the released TFLite files; for imported weights).
        position: how the net gets the face's position (``model.position``): ``input``,
            ``none``, ``late`` or ``frame`` (:mod:`tinytracker.models.regressor`); ``None``
            follows ``grid_embedding`` (checkpoints from before the key).
        late_hidden: ReLU units of the host head for ``position="late"`` (0: one Linear).
        late_film: ``position="late"``: the face box modulates the features before the host
            head's MLP (:class:`~tinytracker.models.regressor.LateHead`). False (checkpoints
            from before it): the MLP alone, on ``cat(features, face_box)``.
    """

    def __init__(
        self,
        in_channels: int = 3,
        grid_embedding: bool = False,
        image_size: int = 112,
        width_mult: float = 1.0,
        output_activation: str = "none",
        output_scale_cm: float = 30.0,
        dropout: float = 0.0,
        padding: str = "symmetric",
        position: str | None = None,
        late_hidden: int = 64,
        late_film: bool = False,
    ) -> None:
        super().__init__(in_channels, grid_embedding, image_size, output_activation,
                         output_scale_cm, padding, position)
        self.feature_dim = 128
        # The authors' ``conv_g``: lets the ImageNet backbone see 3 channels whatever the input.
        self.input_adapter = nn.Conv2d(self.stacked_channels, 3, kernel_size=1)
        self.backbone = MobileNetV3SmallMinimalistic(width_mult)
        # The authors' ``conv_fm``: 576 -> 2 channels keeps the flattened vector tiny (32 at 112)
        self.channel_reduce = nn.Conv2d(self.backbone.out_channels, 2, kernel_size=1)
        flat = 2 * self.backbone.output_size(image_size) ** 2
        self.fc = nn.Sequential(nn.Linear(flat, self.feature_dim), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = self._head(self.feature_dim, late_hidden, late_film)
        self._apply_padding_mode()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked input ``(B, stacked_channels, S, S)`` -> features ``(B, 128)``."""
        side = x.shape[-1]
        x = torch.flatten(self.channel_reduce(self.backbone(self.input_adapter(x))), 1)
        if x.shape[1] != self.fc[0].in_features:
            raise ValueError(
                f"the model was built for image_size={self.image_size}, got {side}x{side} "
                "inputs; build it with the input size you feed"
            )
        return self.fc(x)


class TinyTrackerS(GazeRegressor):
    """TinyTrackerS (Rüegg, Bonazzi, Ronco, arXiv:2308.12313), the Spresense model.

    ``face (B, 1, S, S)`` [+ ``grid_embedding (B, 2, S, S)``] -> gaze ``(B, 2)`` in cm;
    ``features`` gives the 64-d vector after ``fc`` (FC 64 + ReLU).

    Paper: 85.8k parameters. This is *not* a slimmed MobileNetV3: the released
    ``TinyTrackerS.tflite`` is a small MobileNetV2-style net (ReLU6, biased convolutions, no
    squeeze-excite, global average pooling, FC 64). With the defaults (96x96 grey + grid
    embedding, as released) it has exactly 85,802 parameters (conv weights and biases, BN scale
    and shift) and 5.23M MACs.

    The released file takes a 96x96x1 grey image and concatenates a *constant* grid embedding
    (the authors' ``bakedModel``: x and y linspaces over [-0.1, 0.1], i.e. a face box centred in
    the frame) before the first convolution; feed that constant as ``grid_embedding`` to
    reproduce it. Its output is tanh; the authors' training scales it by 10 cm
    (``train_TinyTrackerS.py``), hence ``output_scale_cm=10``.

    The released file's operators and the module each maps to:
    :mod:`tinytracker.import_tflite.layer_tables` (``TINYTRACKER_S``).

    No residual additions occur: no stride-1 block keeps its channel count. All stride-2
    convolutions use TF "SAME" padding (:mod:`tinytracker.models.tf_padding`).

    Args are those of :class:`TinyTracker`; ``image_size`` only documents the expected input
    (global pooling accepts any size) and ``width_mult`` scales every channel count.
    ``baked_grid_embedding=True`` reproduces the released file's constant grid: the embedding
    is the ``baked_grid`` buffer ``(2, S, S)`` (saved with the weights; initialised to the
    linspaces above) and ``input_keys`` is just ``("face",)`` (``position="input"`` only).
    ``position``, ``late_hidden`` and ``late_film``: as :class:`TinyTracker`; every choice
    fits this design (global pooling, so ``frame`` at any size).
    """

    def __init__(
        self,
        in_channels: int = 1,
        grid_embedding: bool = True,
        image_size: int = 96,
        width_mult: float = 1.0,
        output_activation: str = "none",
        output_scale_cm: float = 10.0,
        dropout: float = 0.0,
        padding: str = "symmetric",
        baked_grid_embedding: bool = False,
        position: str | None = None,
        late_hidden: int = 64,
        late_film: bool = False,
    ) -> None:
        super().__init__(in_channels, grid_embedding, image_size, output_activation,
                         output_scale_cm, padding, position)
        self.feature_dim = 64
        self.backbone = TinyTrackerSBackbone(self.stacked_channels, width_mult)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(self.backbone.out_channels, self.feature_dim), nn.ReLU(inplace=True)
        )
        self.dropout = nn.Dropout(dropout)
        self.head = self._head(self.feature_dim, late_hidden, late_film)
        if baked_grid_embedding:
            self._bake_grid_embedding()
        self._apply_padding_mode()

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Stacked input ``(B, stacked_channels, S, S)`` -> features ``(B, 64)``."""
        return self.fc(torch.flatten(self.pool(self.backbone(x)), 1))


