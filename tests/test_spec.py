"""The input spec: one object, recorded in checkpoints and ONNX metadata and read back from
both, including the records of files written before the spec had its current keys."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from tinytracker.data.spec import ONNX_METADATA_KEY, RECORDED, SampleSpec, apply_record

SPEC = SampleSpec(inputs=("face", "grid_embedding"), face_size=96, eye_size=224, grey=True,
                  mean=0.25, std=0.75, grid_embedding=True)


def test_a_record_reads_back_as_the_same_spec():
    record = SPEC.record()
    assert tuple(record) == RECORDED
    assert SampleSpec.from_record(SPEC.inputs, json.loads(json.dumps(record)), "x") == SPEC


def test_onnx_metadata_json_and_the_older_single_keys_give_the_same_spec():
    record = SPEC.record()
    current = {ONNX_METADATA_KEY: json.dumps(record), "face_size": "96"}
    older = {k: json.dumps(v) for k, v in record.items() if k != "eye_size"}
    assert SampleSpec.from_onnx_metadata(SPEC.inputs, current, "a.onnx") == SPEC
    assert SampleSpec.from_onnx_metadata(SPEC.inputs, older, "b.onnx") == SPEC


def test_an_older_checkpoint_record_without_eye_size_or_grid_embedding_loads():
    old = {"face_size": 112, "grey": False, "mean": 0.5, "std": 0.5, "eye_size": None}
    spec = SampleSpec.from_record(("face", "grid_embedding"), old, "old.ckpt")
    assert (spec.eye_size, spec.grid_embedding) == (224, True)


def test_a_record_without_the_preprocessing_names_the_file_and_the_keys():
    with pytest.raises(ValueError, match=r"model\.onnx .*\['grey', 'mean', 'std'\]"):
        SampleSpec.from_record(("face",), {"face_size": 112}, "model.onnx")


def test_the_data_config_gives_the_spec_and_takes_a_record_back():
    data = OmegaConf.create({"face_size": 64, "eye_size": 128, "grey": True,
                             "grid_embedding": False, "mean": 0.5, "std": 0.5})
    spec = SampleSpec.from_data_config(data, ("face",))
    assert spec == SampleSpec(("face",), 64, 128, True, 0.5, 0.5, False)
    apply_record(data, {**SPEC.record(), "eye_size": None})
    assert (data.face_size, data.eye_size, data.grey) == (96, 128, True)


def test_the_grid_convention_and_resize_filter_travel_and_older_records_mean_ours():
    authors = SampleSpec(("face", "grid_embedding"), 128, grid_embedding=True,
                         grid_convention="authors_tf", interpolation="bilinear")
    record = json.loads(json.dumps(authors.record()))
    assert (record["grid_convention"], record["interpolation"]) == ("authors_tf", "bilinear")
    assert SampleSpec.from_record(authors.inputs, record, "x.ckpt") == authors
    meta = {ONNX_METADATA_KEY: json.dumps(record)}
    assert SampleSpec.from_onnx_metadata(authors.inputs, meta, "x.onnx") == authors
    # a file written before the keys existed: our convention, as it was trained with
    old = {k: v for k, v in record.items() if k not in ("grid_convention", "interpolation")}
    spec = SampleSpec.from_record(authors.inputs, old, "old.ckpt")
    assert (spec.grid_convention, spec.interpolation) == ("cell_edges", "area")


def test_an_unknown_grid_convention_is_refused_naming_the_key():
    with pytest.raises(ValueError, match=r"grid_convention must be one of .*'edges'"):
        SampleSpec(grid_convention="edges")
    with pytest.raises(ValueError, match=r"interpolation must be one of .*'cubic'"):
        SampleSpec.from_record(("face",), {**SPEC.record(), "interpolation": "cubic"}, "x")


def test_the_data_module_refuses_an_unknown_convention_naming_the_data_key():
    from tinytracker.data.datamodule import GazeDataModule

    with pytest.raises(ValueError, match=r"data\.grid_convention must be one of"):
        GazeDataModule(grid_convention="authors")
    assert GazeDataModule(grid_convention="authors_tf").spec.grid_convention == "authors_tf"
