"""The host head of the ``late`` choice: features + normalised ROI box -> (XCam, YCam) cm.

A multilayer perceptron, run with numpy alone (the Pi has no PyTorch). With ``film`` (the
default head, :class:`tinytracker.models.regressor.LateHead`), the box first modulates the
features::

    b = 2 box - 1                                # box = ROI (x0, y0, x1, y1) in [0, 1]
    gamma, beta = split(b @ film_weight.T + film_bias)        # each (N, F)
    x_0 = concat(features * (1 + gamma) + beta, b)            # (N, F + 4)
    x_k = relu(x_{k-1} @ W_k.T + b_k)            # hidden layers, W_k: (out, in), as nn.Linear
    gaze_cm = x_{L-1} @ W_L.T + b_L              # (N, 2): XCam, YCam in cm

Without ``film``: ``x_0 = concat(features, box)``, then the same layers.

The file is an ``.npz`` without pickles: arrays ``weight_<k>`` / ``bias_<k>`` (and
``film_weight`` ``(2F, 4)`` / ``film_bias`` ``(2F,)``) and ``header``, a JSON string with
``format_version``, ``feature_dim``, ``film``, ``layers`` (``"linear"``/``"relu"``, in order),
``formula`` and ``ckpt_sha256``: the checkpoint it was cut from, which
:func:`check_checkpoint` compares with ``deploy.json``'s, so that a head never runs on another
checkpoint's sensor graph. Version 1 files (no ``film``) still load.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HEAD_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
BOX_DIM = 4
FORMULA = ("gaze_cm = MLP(concat(features, box)); box = ROI (x0, y0, x1, y1) normalised to the "
           "sensor frame; layers as in 'layers', linear: x @ weight.T + bias, relu: max(x, 0)")
FILM_FORMULA = ("b = 2 box - 1; gamma, beta = split(b @ film_weight.T + film_bias, 2); "
                "gaze_cm = MLP(concat(features * (1 + gamma) + beta, b)); box = ROI (x0, y0, "
                "x1, y1) normalised to the sensor frame; layers as in 'layers', linear: "
                "x @ weight.T + bias, relu: max(x, 0)")


class HeadError(ValueError):
    """A head file that cannot be used: unreadable, malformed, or of another checkpoint."""


@dataclass(frozen=True)
class Head:
    """Weights ``(out, in)`` and biases ``(out,)`` of each linear layer, in order; a ReLU
    follows every layer listed in ``relu_after`` (indices into ``weights``)."""

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    relu_after: tuple[int, ...]
    feature_dim: int
    ckpt_sha256: str
    film_weight: np.ndarray | None = None  # (2 feature_dim, 4)
    film_bias: np.ndarray | None = None    # (2 feature_dim,)

    def __post_init__(self) -> None:
        if (self.film_weight is None) != (self.film_bias is None):
            raise HeadError("film_weight and film_bias come together")
        if self.film_weight is not None and (
                self.film_weight.shape != (2 * self.feature_dim, BOX_DIM)
                or self.film_bias.shape != (2 * self.feature_dim,)):
            raise HeadError(f"film weight {self.film_weight.shape} / bias "
                            f"{self.film_bias.shape}: expected ({2 * self.feature_dim}, "
                            f"{BOX_DIM}) and ({2 * self.feature_dim},)")
        expected_in = self.feature_dim + BOX_DIM
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if w.ndim != 2 or b.shape != (w.shape[0],) or w.shape[1] != expected_in:
                raise HeadError(f"layer {k}: weight {w.shape} / bias {b.shape} do not chain "
                                f"(expected weight (out, {expected_in}) and bias (out,))")
            expected_in = w.shape[0]
        if expected_in != 2:
            raise HeadError(f"the last layer has {expected_in} outputs; the head gives XCam, YCam")

    def apply(self, features: np.ndarray, box: np.ndarray) -> np.ndarray:
        """``features`` ``(N, F)`` or ``(F,)``, ``box`` ``(N, 4)`` or ``(4,)`` -> float32
        ``(N, 2)``: (XCam, YCam) in cm. Computed in float64."""
        features = np.atleast_2d(np.asarray(features, dtype=np.float64))
        box = np.atleast_2d(np.asarray(box, dtype=np.float64))
        if features.shape[1] != self.feature_dim or box.shape[1] != BOX_DIM \
                or len(features) != len(box):
            raise HeadError(f"expected features (N, {self.feature_dim}) and box (N, {BOX_DIM}), "
                            f"got {features.shape} and {box.shape}")
        if self.film_weight is not None:
            box = 2 * box - 1
            film = box @ self.film_weight.T.astype(np.float64) + self.film_bias.astype(np.float64)
            gamma, beta = film[:, :self.feature_dim], film[:, self.feature_dim:]
            features = features * (1 + gamma) + beta
        x = np.concatenate([features, box], axis=1)
        for k, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = x @ w.T.astype(np.float64) + b.astype(np.float64)
            if k in self.relu_after:
                x = np.maximum(x, 0.0)
        return x.astype(np.float32)

    def layers(self) -> list[str]:
        """``["linear", "relu", ..., "linear"]``, the header's description."""
        out: list[str] = []
        for k in range(len(self.weights)):
            out.append("linear")
            if k in self.relu_after:
                out.append("relu")
        return out


def save_head(path: Path | str, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray],
              ckpt_sha256: str, relu_after: Sequence[int] | None = None,
              film: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Write a head file. ``relu_after``: default a ReLU after every layer but the last (an
    ``nn.Sequential(Linear, ReLU, ..., Linear)``). ``feature_dim`` follows from the first weight.
    ``film``: ``(film_weight, film_bias)`` of a :class:`~tinytracker.models.regressor.LateHead`.
    """
    weights = tuple(np.asarray(w, dtype=np.float32) for w in weights)
    biases = tuple(np.asarray(b, dtype=np.float32) for b in biases)
    relu = tuple(range(len(weights) - 1)) if relu_after is None else tuple(relu_after)
    if not weights:
        raise HeadError("a head needs at least one linear layer")
    film_arrays = (None, None) if film is None else tuple(
        np.asarray(a, dtype=np.float32) for a in film)
    head = Head(weights, biases, relu, int(weights[0].shape[1]) - BOX_DIM, ckpt_sha256,
                *film_arrays)
    header = {"format_version": HEAD_FORMAT_VERSION, "feature_dim": head.feature_dim,
              "film": film is not None, "layers": head.layers(),
              "formula": FORMULA if film is None else FILM_FORMULA, "ckpt_sha256": ckpt_sha256}
    arrays = {f"weight_{k}": w for k, w in enumerate(weights)}
    arrays |= {f"bias_{k}": b for k, b in enumerate(biases)}
    if film is not None:
        arrays |= {"film_weight": film_arrays[0], "film_bias": film_arrays[1]}
    path = Path(path)
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to other names
        np.savez(f, header=np.array(json.dumps(header)), **arrays)
    return path


def load_head(path: Path | str) -> Head:
    """Read a head file written by :func:`save_head`."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise HeadError(f"{path}: not a readable head file (.npz): {err}") from err
    header = _header(arrays, path)
    n = sum(1 for layer in header["layers"] if layer == "linear")
    film = bool(header.get("film", False))
    missing = [k for i in range(n) for k in (f"weight_{i}", f"bias_{i}") if k not in arrays]
    missing += [k for k in ("film_weight", "film_bias") if film and k not in arrays]
    if missing:
        raise HeadError(f"{path}: header lists {n} linear layers"
                        f"{' and film' if film else ''} but arrays {missing} are absent")
    head = Head(tuple(arrays[f"weight_{i}"] for i in range(n)),
                tuple(arrays[f"bias_{i}"] for i in range(n)),
                _relu_after(header["layers"], path), int(header["feature_dim"]),
                str(header["ckpt_sha256"]),
                arrays["film_weight"] if film else None, arrays["film_bias"] if film else None)
    return head


def _header(arrays: Mapping[str, np.ndarray], path: Path) -> dict[str, Any]:
    if "header" not in arrays:
        raise HeadError(f"{path}: no 'header' array (not a tinytracker head file)")
    try:
        header = json.loads(str(arrays["header"]))
    except json.JSONDecodeError as err:
        raise HeadError(f"{path}: header is not JSON: {err}") from err
    for key in ("format_version", "feature_dim", "layers", "ckpt_sha256"):
        if key not in header:
            raise HeadError(f"{path}: header lacks key {key!r}")
    if header["format_version"] not in READABLE_VERSIONS:
        raise HeadError(f"{path}: header key 'format_version' is {header['format_version']!r}; "
                        f"this tinytracker reads {', '.join(map(str, READABLE_VERSIONS))}: "
                        "export again")
    return header


def _relu_after(layers: Sequence[str], path: Path) -> tuple[int, ...]:
    relu: list[int] = []
    linear = -1
    for name in layers:
        if name == "linear":
            linear += 1
        elif name == "relu" and linear >= 0 and linear not in relu:
            relu.append(linear)
        else:
            raise HeadError(f"{path}: header 'layers' {list(layers)}: expected 'linear' layers, "
                            "each optionally followed by one 'relu'")
    return tuple(relu)


def check_checkpoint(head: Head, ckpt_sha256: str, head_path: Path | str,
                     manifest_path: Path | str) -> None:
    """Refuse a head cut from another checkpoint than the one ``deploy.json`` names."""
    if head.ckpt_sha256 != ckpt_sha256:
        raise HeadError(
            f"the head {head_path} belongs to checkpoint sha256 {head.ckpt_sha256} but "
            f"{manifest_path} (and its sensor graph) to checkpoint sha256 {ckpt_sha256}; export "
            "both from the same checkpoint (python -m tinytracker.export format=imx500)")


def layers_from_module(module: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[int],
                                             tuple[np.ndarray, np.ndarray] | None]:
    """:func:`layers_from_sequential` of a host head, and its ``film`` arrays: a
    :class:`~tinytracker.models.regressor.LateHead` (``film`` and ``mlp``) or a plain
    ``nn.Sequential`` (``film`` None)."""
    film_layer = getattr(module, "film", None)
    if film_layer is None:
        return (*layers_from_sequential(module), None)
    film = (film_layer.weight.detach().cpu().double().numpy(),
            film_layer.bias.detach().cpu().double().numpy())
    return (*layers_from_sequential(module.mlp), film)


def layers_from_sequential(module: Any) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Weights, biases and ReLU positions of a PyTorch ``nn.Sequential`` of ``Linear`` and
    ``ReLU`` layers (torch imported here only: the exporter's side)."""
    from torch import nn

    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    relu: list[int] = []
    for name, layer in module.named_children():
        if isinstance(layer, nn.Linear):
            weights.append(layer.weight.detach().cpu().double().numpy())
            bias = layer.bias if layer.bias is not None else None
            biases.append(np.zeros(layer.out_features) if bias is None
                          else bias.detach().cpu().double().numpy())
        elif isinstance(layer, nn.ReLU) and weights and len(weights) - 1 not in relu:
            relu.append(len(weights) - 1)
        else:
            raise HeadError(f"layer {name!r} ({type(layer).__name__}): the host head supports "
                            "nn.Linear, each optionally followed by one nn.ReLU")
    return weights, biases, relu


def layers_from_state_dict(state_dict: Mapping[str, Any], prefix: str = ""
                           ) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """The same from a ``state_dict`` of ``nn.Sequential(Linear, ReLU, ..., Linear)`` (keys
    ``<prefix><index>.weight`` / ``.bias``): a ReLU after every linear layer but the last."""
    indices = sorted({int(k[len(prefix):].split(".")[0]) for k in state_dict
                      if k.startswith(prefix) and k.endswith(".weight")})
    if not indices:
        raise HeadError(f"no '{prefix}<index>.weight' keys in the state_dict "
                        f"(keys: {sorted(state_dict)[:8]}...)")
    weights, biases = [], []
    for i in indices:
        weight = np.asarray(state_dict[f"{prefix}{i}.weight"].detach().cpu().double().numpy())
        bias = state_dict.get(f"{prefix}{i}.bias")
        weights.append(weight)
        biases.append(np.zeros(len(weight)) if bias is None
                      else bias.detach().cpu().double().numpy())
    return weights, biases, list(range(len(indices) - 1))
