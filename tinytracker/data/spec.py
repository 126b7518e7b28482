"""The input spec: the fields a model takes and the preprocessing it was trained with.

One object, :class:`SampleSpec`, for every consumer: the data pipeline builds samples from it,
a checkpoint records it (``hyper_parameters.input_spec``: :meth:`SampleSpec.record`), an
exported ONNX file carries the same record in its metadata (:data:`ONNX_METADATA_KEY`), and
evaluate, predict and calibrate rebuild the spec from either (:meth:`SampleSpec.from_record`,
:meth:`SampleSpec.from_onnx_metadata`), like torchvision's ``Weights.transforms()``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# The keys of a record: data config keys of the same names (conf/data/*.yaml).
RECORDED = ("face_size", "eye_size", "grey", "grid_embedding", "mean", "std",
            "grid_convention", "interpolation")
REQUIRED = ("face_size", "grey", "mean", "std")  # without them the pixels are unknown
ONNX_METADATA_KEY = "tinytracker.input_spec"  # a JSON object: the record
DEFAULT_EYE_SIZE = 224  # iTracker's eye crops; a face-only model's record may leave it out
# Where the grid embedding of a face-grid box (X, Y, W, H; X, Y 1-based cells) starts:
# "cell_edges" (ours): at the box's left/top cell edge, 2 (X - 1) / 25 - 1, so a face filling
# the frame spans [-1, 1]; "authors_tf": at 2 X / 25 - 1, one cell right/down, as
# ``create_grid`` of the TinyTracker authors' training pipeline (pbonazzi/tinytracker,
# src/ITrackerDataTF.py) computes it from faceGrid.json, which their released weights learned.
GRID_CONVENTIONS = ("cell_edges", "authors_tf")
# How crops are resized to the model's input: "area" (ours: OpenCV's area filter when
# shrinking, bilinear when enlarging); "bilinear" (bilinear both ways, no antialiasing: the
# authors' ``tf.image.resize(image, shape)`` default in src/ITrackerDataTF.py).
INTERPOLATIONS = ("area", "bilinear")


@dataclass
class SampleSpec:
    """What a model needs from each sample.

    ``grid_embedding`` is the data config's switch for the TinyTracker nets' two extra input
    channels (``model.net.grid_embedding`` follows it); the field is loaded when ``inputs``
    names it. ``grid_convention`` (:data:`GRID_CONVENTIONS`) and ``interpolation``
    (:data:`INTERPOLATIONS`) say how that embedding and the resized crops were computed in
    training; a record without them (files written before they existed) means ours.
    """

    inputs: tuple[str, ...] = ("face",)
    face_size: int = 112
    eye_size: int = DEFAULT_EYE_SIZE
    grey: bool = False
    mean: float = 0.5
    std: float = 0.5
    grid_embedding: bool = False
    grid_convention: str = "cell_edges"
    interpolation: str = "area"

    def __post_init__(self) -> None:
        for key, allowed in (("grid_convention", GRID_CONVENTIONS),
                             ("interpolation", INTERPOLATIONS)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {getattr(self, key)!r}")

    def image_size(self, name: str) -> int:
        """Side in pixels of the image field ``name`` (``face`` and ``frame``: ``face_size``;
        an eye: ``eye_size``)."""
        return self.face_size if name in ("face", "frame") else self.eye_size

    def record(self) -> dict[str, Any]:
        """The preprocessing as a checkpoint's ``input_spec`` and the ONNX metadata hold it."""
        return {key: getattr(self, key) for key in RECORDED}

    @classmethod
    def from_data_config(cls, data_cfg: Any, inputs: Sequence[str]) -> SampleSpec:
        """The spec of a data config (``cfg.data``) for a model taking ``inputs``."""
        values = {key: data_cfg.get(key) for key in RECORDED}
        return cls(inputs=tuple(inputs), **{k: v for k, v in values.items() if v is not None})

    @classmethod
    def from_record(cls, inputs: Sequence[str], record: Mapping[str, Any] | None,
                    source: str) -> SampleSpec:
        """The spec of a checkpoint's or an ONNX file's record; ``source`` names the file."""
        record = dict(record or {})
        missing = [key for key in REQUIRED if record.get(key) is None]
        if missing:
            raise ValueError(f"{source} does not record the preprocessing {missing} "
                             "(input_spec); it was not written by tinytracker")
        inputs = tuple(inputs)
        grid = record.get("grid_embedding")
        return cls(inputs=inputs, face_size=int(record["face_size"]),
                   eye_size=int(record.get("eye_size") or DEFAULT_EYE_SIZE),
                   grey=bool(record["grey"]), mean=float(record["mean"]),
                   std=float(record["std"]),
                   grid_embedding=("grid_embedding" in inputs) if grid is None else bool(grid),
                   grid_convention=str(record.get("grid_convention") or "cell_edges"),
                   interpolation=str(record.get("interpolation") or "area"))

    @classmethod
    def from_onnx_metadata(cls, inputs: Sequence[str], meta: Mapping[str, str],
                           source: str) -> SampleSpec:
        """The spec of an exported file's ``metadata_props``: the JSON record, or (files
        exported before it existed) the single keys, each JSON-encoded."""
        try:
            if ONNX_METADATA_KEY in meta:
                record = json.loads(meta[ONNX_METADATA_KEY])
            else:
                record = {key: json.loads(meta[key]) for key in RECORDED if key in meta}
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}: its metadata is not the JSON tinytracker.export "
                             f"writes ({err})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{source}: its metadata {ONNX_METADATA_KEY!r} must be a JSON "
                             f"object, found {type(record).__name__}")
        return cls.from_record(inputs, record, source)


def apply_record(data_cfg: Any, record: Mapping[str, Any] | None) -> None:
    """Set the data config keys a record holds, so the data gives the recorded inputs.

    Lenient on purpose: a key the record leaves out (``None``) keeps the config's value, as for
    checkpoints written before every key was recorded. ``data_cfg`` must accept new keys
    (``omegaconf.open_dict``).
    """
    for key, value in (record or {}).items():
        if value is not None:
            data_cfg[key] = value
