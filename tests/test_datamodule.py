"""DataModule over a prepared synthetic set: shapes and ranges per model input, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from tests.conftest import compose_config
from tinytracker.config import ConfigError
from tinytracker.data import synthetic as syn
from tinytracker.data.datamodule import GazeDataModule
from tinytracker.data.geometry import face_grid_mask
from tinytracker.data.prepare import prepare
from tinytracker.data.processed import DataFormatError, load_index
from tinytracker.train import train

ITRACKER = ("face", "eye_left", "eye_right", "face_grid")


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("dm") / "raw"
    syn.generate(raw, seed=3, subjects=4, frames_per_subject=8, workers=1, progress=False)
    out = raw.parent / "processed"
    prepare(raw, out)
    return out


def _dm(root: Path, **kw) -> GazeDataModule:
    kw.setdefault("batch_size", 4)
    kw.setdefault("format", "jpeg")  # as conf/data/gazecapture.yaml: real data decodes JPEGs
    return GazeDataModule(name="gazecapture", source="gazecapture", root=str(root),
                          cache_dir=str(root.parent / "cache"), augment={"enabled": False},
                          **kw)


def _batch(dm: GazeDataModule, split: str = "train") -> dict[str, torch.Tensor]:
    dm.prepare_data()
    dm.setup("fit")
    loader = {"train": dm.train_dataloader, "test": dm.test_dataloader}[split]()
    return next(iter(loader))


def test_tinytracker_inputs_shapes_and_ranges(processed):
    dm = _dm(processed, inputs=("face", "grid_embedding"), face_size=112)
    b = _batch(dm)
    assert b["face"].shape == (4, 3, 112, 112) and b["face"].dtype == torch.float32
    assert -1.0 <= b["face"].min() and b["face"].max() <= 1.0  # (x/255 - 0.5) / 0.5
    assert b["face"].std() > 0.05  # real image content, not a blank
    assert b["grid_embedding"].shape == (4, 2, 112, 112)
    assert b["grid_embedding"].abs().max() <= 1.0
    # x varies along width only, y along height only
    assert torch.allclose(b["grid_embedding"][:, 0, 0, :], b["grid_embedding"][:, 0, -1, :])
    assert torch.allclose(b["grid_embedding"][:, 1, :, 0], b["grid_embedding"][:, 1, :, -1])
    assert b["gaze_cm"].shape == (4, 2)
    assert "eye_left" not in b
    assert b["rec_num"].dtype == torch.int64


def test_grey_96_for_tinytracker_s(processed):
    b = _batch(_dm(processed, inputs=("face",), face_size=96, grey=True))
    assert b["face"].shape == (4, 1, 96, 96)


def test_itracker_inputs_match_the_metadata(processed):
    dm = _dm(processed, inputs=ITRACKER, face_size=224, eye_size=224)
    b = _batch(dm, "test")
    for key in ("face", "eye_left", "eye_right"):
        assert b[key].shape == (4, 3, 224, 224), key
    assert b["face_grid"].shape == (4, 625)
    assert set(torch.unique(b["face_grid"]).tolist()) <= {0.0, 1.0}
    # labels are exactly those of metadata.mat, read as the public loader does
    meta = scipy.io.loadmat(str(processed / "metadata.mat"), squeeze_me=True,
                            struct_as_record=False)
    test_rows = np.flatnonzero(meta["labelTest"].astype(bool))[:4]
    np.testing.assert_allclose(b["gaze_cm"][:, 0].numpy(), meta["labelDotXCam"][test_rows],
                               rtol=1e-6)
    np.testing.assert_allclose(b["gaze_cm"][:, 1].numpy(), meta["labelDotYCam"][test_rows],
                               rtol=1e-6)
    grid = face_grid_mask(meta["labelFaceGrid"][test_rows[0]])
    np.testing.assert_array_equal(b["face_grid"][0].numpy(), grid)


def test_splits_are_by_subject(processed):
    index = load_index(processed)
    subjects = {s: set(index.split_of(s).rec_num.tolist()) for s in ("train", "val", "test")}
    assert not subjects["train"] & subjects["val"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["val"] & subjects["test"]


def test_mean_predictor_error_is_computed_from_labels(processed):
    dm = _dm(processed)
    dm.prepare_data()
    dm.setup()
    index = load_index(processed)
    mean = index.split_of("train").gaze_cm.mean(0)
    expected = np.linalg.norm(index.split_of("test").gaze_cm - mean, axis=1).mean()
    assert dm.mean_predictor_error_cm() == pytest.approx(expected)


def test_missing_root_names_the_path(tmp_path):
    dm = _dm(tmp_path / "nowhere")
    with pytest.raises(DataFormatError, match="nowhere.*metadata.mat"):
        dm.prepare_data()


def test_missing_crop_named_or_skipped(processed, tmp_path):
    copy = Path(shutil.copytree(processed, tmp_path / "p"))
    victim = sorted((copy).glob("*/appleFace/*.jpg"))[0]
    victim.unlink()
    with pytest.raises(DataFormatError, match=f"{victim.parent.parent.name}.*{victim.stem}"):
        _dm(copy).setup()
    dm = _dm(copy, skip_bad=True)
    dm.setup()
    assert dm.skipped_missing == 1


def test_corrupt_crop_named_or_skipped(processed, tmp_path):
    copy = Path(shutil.copytree(processed, tmp_path / "p"))
    dm = _dm(copy, batch_size=64)
    dm.setup()
    index = dm.datasets["train"].index
    victim = copy / f"{index.rec_num[0]:05d}" / "appleFace" / f"{index.frame_index[0]:05d}.jpg"
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=str(victim)):
        dm.datasets["train"][0]
    dm2 = _dm(copy, skip_bad=True)
    dm2.setup()
    sample = dm2.datasets["train"][0]
    assert int(sample["frame_index"]) != int(index.frame_index[0]) or \
        int(sample["rec_num"]) != int(index.rec_num[0])
    assert dm2.datasets["train"].bad_count == 1


def test_metadata_missing_key_is_named(processed, tmp_path):
    copy = Path(shutil.copytree(processed, tmp_path / "p"))
    meta = scipy.io.loadmat(str(copy / "metadata.mat"))
    del meta["labelVal"]
    scipy.io.savemat(str(copy / "metadata.mat"), {k: v for k, v in meta.items()
                                                  if not k.startswith("__")})
    with pytest.raises(DataFormatError, match="labelVal"):
        load_index(copy)


def test_train_with_gazecapture_root_missing_fails_naming_key(tmp_path):
    """In-process: the config ``python -m tinytracker.train data=gazecapture`` composes."""
    cfg = compose_config("train", "data=gazecapture", out_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"data\.root is required"):
        train(cfg)
    cfg = compose_config("train", "data=gazecapture", f"data.root={tmp_path}/missing",
                         "logger=csv", out_dir=tmp_path)
    with pytest.raises(DataFormatError, match=f"{tmp_path}/missing"):
        train(cfg)


def test_defaults_are_the_synthetic_configs():
    """GazeDataModule's Python defaults are conf/data/synthetic.yaml's (the default data)."""
    import inspect

    from omegaconf import OmegaConf

    from tests.conftest import REPO

    yaml = OmegaConf.load(REPO / "tinytracker" / "conf" / "data" / "synthetic.yaml")
    params = inspect.signature(GazeDataModule.__init__).parameters
    keys = ("name", "source", "face_size", "eye_size", "grey", "grid_embedding", "mean", "std",
            "batch_size", "num_workers", "pin_memory", "skip_bad", "format", "packed_dir",
            "pack_shard_mb")
    assert {k: params[k].default for k in keys} == {k: yaml[k] for k in keys}
