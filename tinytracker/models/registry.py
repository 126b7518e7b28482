"""The three gaze nets by name: one card per model for its defaults, preprocessing and weights.

Like timm's ``pretrained_cfg``: a :class:`ModelCard` says what a model takes (input size,
channels, grid embedding, read from the constructor's own defaults so they are declared once),
which Hydra experiment trains it, and where imported weights come from (the authors' released
TFLite files, through ``python -m tinytracker.import_tflite``). Consumers read the card instead
of re-declaring its fields; :func:`build` makes the net.

Hydra configs keep building the classes directly (``conf/model/*.yaml``, ``_target_:
tinytracker.models.TinyTracker``): checkpoints store that config, and a test keeps each
config's ``_target_`` and ``name`` equal to its card.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from torch import nn

from tinytracker.models.itracker import ITracker
from tinytracker.models.tinytracker import TinyTracker, TinyTrackerS


@dataclass(frozen=True)
class ReleasedWeights:
    """Weights the authors released, and how to import them as a tinytracker checkpoint."""

    file: str  # file name in the authors' repository
    repository: str
    # The tanh output's range is not stored in the files; the import takes the net's default
    # output_scale_cm: 30 cm for TinyTracker (train_TinyTracker.py: ``model(x) * 30.``, as its
    # evaluate_tflite.py), 10 cm for TinyTrackerS (train_TinyTrackerS.py: ``* 10.``).


@dataclass(frozen=True)
class ModelCard:
    """One model's defaults and preprocessing, and where its weights come from."""

    name: str  # conf/model/<name>.yaml, the metrics' model/name
    cls: type[nn.Module]
    paper: str
    experiment: str  # +experiment=<experiment> trains it with its data settings
    released: ReleasedWeights | None = None

    @property
    def target(self) -> str:
        """The ``_target_`` of the net's Hydra config."""
        return f"tinytracker.models.{self.cls.__name__}"

    @property
    def defaults(self) -> dict[str, Any]:
        """The constructor's keyword defaults (the one place they are declared)."""
        return {k: p.default for k, p in inspect.signature(self.cls).parameters.items()
                if p.default is not inspect.Parameter.empty}

    @property
    def input_size(self) -> int:
        """Side in pixels of the square face crop the model is built for by default."""
        return int(self.defaults["image_size"])

    @property
    def in_channels(self) -> int:
        """Image channels by default: 1 (grey) or 3 (RGB)."""
        return int(self.defaults.get("in_channels", 3))

    def input_spec(self) -> dict[str, Any]:
        """The data settings (``data.*``) of the model's default input; the model's experiment
        sets the same (a test keeps them equal). The grid embedding is the data config's
        choice (``data.grid_embedding``), not the card's."""
        return {"face_size": self.input_size, "grey": self.in_channels == 1}

    def net_config(self, **overrides: Any) -> dict[str, Any]:
        """Hydra config of the net (as checkpoints store it), with ``overrides``."""
        return {"_target_": self.target, **overrides}


MODELS: dict[str, ModelCard] = {
    card.name: card for card in (
        ModelCard("itracker", ITracker, "Krafka et al., CVPR 2016", experiment="baseline"),
        ModelCard("tinytracker", TinyTracker, "Bonazzi et al., arXiv:2307.07813",
                  experiment="tinytracker",
                  released=ReleasedWeights("TinyTracker.tflite", "pbonazzi/tinytracker")),
        ModelCard("tinytracker_s", TinyTrackerS, "Rüegg, Bonazzi, Ronco, arXiv:2308.12313",
                  experiment="tinytracker_s",
                  released=ReleasedWeights("TinyTrackerS.tflite", "pbonazzi/tinytracker")),
    )
}


def card(name: str) -> ModelCard:
    """The card of model ``name``; the error lists the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None


def card_of(net: nn.Module) -> ModelCard | None:
    """The card of a built float net (``None`` for anything else, e.g. a quantized wrapper)."""
    return next((c for c in MODELS.values() if type(net) is c.cls), None)


def with_released_weights() -> tuple[str, ...]:
    """Names of the models whose authors released weights we can import."""
    return tuple(name for name, c in MODELS.items() if c.released is not None)


def build(name: str, **overrides: Any) -> nn.Module:
    """The float net ``name`` with its defaults, updated by ``overrides``."""
    return card(name).cls(**overrides)
