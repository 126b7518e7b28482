"""Packed data format: same batches as the JPEG path, staleness, bad crops, the pack command."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import SMALL_DATA, run_module
from tinytracker.data.datamodule import GazeDataModule
from tinytracker.data.dataset import collate
from tinytracker.data.processed import DataFormatError, crop_path, load_index

# SMALL_DATA's synthetic set, so the session cache is shared with the end-to-end tests.
SMALL_SYNTHETIC = {"seed": 0, "subjects": 6, "frames_per_subject": 16}
MODELS = {  # the inputs of each model, at its sizes
    "tinytracker": {"inputs": ("face", "grid_embedding"), "face_size": 112},
    "tinytracker_s": {"inputs": ("face", "grid_embedding"), "face_size": 96, "grey": True},
    "itracker": {"inputs": ("face", "eye_left", "eye_right", "face_grid"), "face_size": 224,
                 "eye_size": 224},
}


def _dm(cache_dir: Path, fmt: str, root: Path | None = None, **kw) -> GazeDataModule:
    source = {"source": "gazecapture", "root": str(root)} if root else {
        "source": "synthetic", "synthetic": SMALL_SYNTHETIC}
    kw.setdefault("augment", {"enabled": False})
    dm = GazeDataModule(cache_dir=str(cache_dir), batch_size=8, eval_batch_size=16,
                        format=fmt, **source, **kw)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _batches(dm: GazeDataModule, split: str, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(seed)  # the train loader's shuffling
    return list(getattr(dm, f"{split}_dataloader")())


def _assert_identical(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b) and len(a) > 0
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype, key
            assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize("model", sorted(MODELS))
def test_packed_and_jpeg_batches_are_identical(cache_dir, tmp_path, model):
    jpeg = _dm(cache_dir, "jpeg", **MODELS[model])
    packed = _dm(cache_dir, "packed", pack_shard_mb=1, packed_dir=str(tmp_path),  # 1 MB shards
                 **MODELS[model])
    assert type(packed.datasets["train"]).__name__ == "PackedDataset"
    assert len(packed.datasets["train"].packed.files) > 1
    for split in ("train", "test"):
        _assert_identical(_batches(jpeg, split), _batches(packed, split))
    rows = [5, 0, 3]  # a batch assembled at once (DataLoader's __getitems__) == stacked samples
    whole = packed.datasets["val"].__getitems__(rows)
    _assert_identical([whole], [collate([jpeg.datasets["val"][i] for i in rows])])


def test_the_authors_conventions_reach_both_formats_and_get_their_own_pack(cache_dir, tmp_path):
    """An imported model's spec (authors_tf grid, bilinear resize): identical batches from
    JPEG and a pack of its own; grids one cell (2/25) further and other pixels than ours."""
    authors = {"inputs": ("face", "grid_embedding"), "face_size": 128,
               "grid_convention": "authors_tf", "interpolation": "bilinear"}
    jpeg = _dm(cache_dir, "jpeg", **authors)
    packed = _dm(cache_dir, "packed", packed_dir=str(tmp_path), **authors)
    ours = _dm(cache_dir, "packed", packed_dir=str(tmp_path), inputs=authors["inputs"],
               face_size=128)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "face128", "face128-bilinear"]
    theirs_batches = _batches(packed, "test")
    _assert_identical(_batches(jpeg, "test"), theirs_batches)
    ours_batch, theirs = _batches(ours, "test")[0], theirs_batches[0]
    diff = theirs["grid_embedding"] - ours_batch["grid_embedding"]
    torch.testing.assert_close(diff, torch.full_like(diff, 2 / 25), rtol=0, atol=1e-6)
    assert not torch.equal(theirs["face"], ours_batch["face"])  # crops of ~200 px shrink
    # a pack of one filter is not read for the other
    from tinytracker.data.packed import PackedDataset, PackedSplit

    with pytest.raises(DataFormatError, match="interpolation=area, the model needs bilinear"):
        PackedDataset(ours.index.split_of("test"), PackedSplit(tmp_path / "face128", "test"),
                      packed.spec)


def test_packed_path_still_augments_on_the_fly(cache_dir):
    plain = _batches(_dm(cache_dir, "packed"), "train")
    augmented = _dm(cache_dir, "packed", augment={"enabled": True, "strength": 1.0})
    first, second = _batches(augmented, "train"), _batches(augmented, "train")
    assert not torch.equal(plain[0]["face"], first[0]["face"])
    assert not torch.equal(first[0]["face"], second[0]["face"])  # new draws every epoch
    assert torch.equal(plain[0]["gaze_cm"], first[0]["gaze_cm"])  # same frames, same order


def test_augmentation_follows_the_run_seed(cache_dir):
    """The same seed draws the same augmentations (albumentations seeded from torch's seed,
    not from OS entropy); another seed draws others."""
    aug = {"enabled": True, "strength": 1.0}
    first = _batches(_dm(cache_dir, "packed", augment=aug), "train", seed=0)
    again = _batches(_dm(cache_dir, "packed", augment=aug), "train", seed=0)
    _assert_identical(first, again)
    other = _batches(_dm(cache_dir, "packed", augment=aug), "train", seed=1)
    assert not torch.equal(first[0]["face"], other[0]["face"])


@pytest.fixture()
def processed_copy(cache_dir, tmp_path) -> Path:
    """A writable copy of the small synthetic set's processed directory."""
    source = _dm(cache_dir, "jpeg").processed_root
    return Path(shutil.copytree(source, tmp_path / "processed"))


def _replace_crop(root: Path, row: int, image: np.ndarray | None) -> Path:
    """Write a new face crop of ``row`` (or garbage bytes) the way ``prepare`` does: a rename."""
    index = load_index(root)
    path = crop_path(root, int(index.rec_num[row]), int(index.frame_index[row]), "face")
    tmp = path.with_suffix(".tmp.jpg")
    if image is None:
        tmp.write_bytes(b"not a jpeg")
    else:
        cv2.imwrite(str(tmp), image)
    tmp.replace(path)
    return path


def test_stale_pack_is_rebuilt_not_used(cache_dir, processed_copy, caplog):
    dm = _dm(cache_dir, "packed", root=processed_copy)
    pack_dir = next(dm.pack_root.glob("face64*"))  # the default size
    before = json.loads((pack_dir / "PACK.json").read_text())["fingerprint"]
    # a crop changes on disk: the next DataModule must see the new pixels, not the old pack
    _replace_crop(processed_copy, 0, np.full((150, 150, 3), 200, np.uint8))
    with caplog.at_level(logging.WARNING):
        packed = _dm(cache_dir, "packed", root=processed_copy)
    assert "stale (changed since it was packed: crop folders)" in caplog.text
    after = json.loads((pack_dir / "PACK.json").read_text())["fingerprint"]
    assert after["crop_folders_sha256"] != before["crop_folders_sha256"]
    jpeg = _dm(cache_dir, "jpeg", root=processed_copy)
    for split in ("train", "test"):
        _assert_identical(_batches(jpeg, split), _batches(packed, split))
    # another size is another pack, not a reuse of the 64 px one
    _dm(cache_dir, "packed", root=processed_copy, face_size=112)
    assert sorted(p.name for p in dm.pack_root.iterdir() if p.is_dir()) == ["face112", "face64"]


def test_unreadable_crop_fails_naming_it_or_is_skipped_like_jpeg(cache_dir, processed_copy):
    bad = _replace_crop(processed_copy, 3, None)
    with pytest.raises(DataFormatError, match=str(bad)):
        _dm(cache_dir, "packed", root=processed_copy)
    packed = _dm(cache_dir, "packed", root=processed_copy, skip_bad=True)
    jpeg = _dm(cache_dir, "jpeg", root=processed_copy, skip_bad=True)
    split = str(load_index(processed_copy).split[3])
    a, b = jpeg.datasets[split], packed.datasets[split]
    _assert_identical([a[i] for i in range(len(a))], [b[i] for i in range(len(b))])
    assert a.bad_count == b.bad_count == 1  # replaced by the next frame, in both paths
    _assert_identical(_batches(jpeg, split), _batches(packed, split))


@pytest.mark.slow  # two commands end to end; the quick tier reads packs in-process (above)
def test_pack_command_then_training_reads_the_pack(tmp_path, cache_dir):
    run_module("tinytracker.data.pack", *SMALL_DATA, f"out_dir={tmp_path / 'pack'}")
    summary = json.loads((tmp_path / "pack" / "pack.json").read_text())
    assert summary["fields"] == {"face": 64}  # the default run's face crops
    index = _dm(cache_dir, "jpeg").index
    assert summary["frames"] == {s: int((index.split == s).sum()) for s in ("train", "val", "test")}
    assert summary["size_bytes"] >= len(index) * 64 * 64 * 3
    run_module("tinytracker.train", *SMALL_DATA, "data.format=packed", f"out_dir={tmp_path}",
               "trainer.fast_dev_run=true", "logger=csv")
    train_log = (tmp_path / "train.log").read_text()
    assert "packing" not in train_log  # the pack written above was found up to date


def test_loader_rate_times_training_batches_of_both_formats(cache_dir):
    """The one loader measurement (data.bench and benchmark) runs on both formats' datasets
    and leaves the thread settings as it found them."""
    import cv2

    from tinytracker.data.throughput import load_batch, loader_rate

    threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    for fmt in ("jpeg", "packed"):
        dataset = _dm(cache_dir, fmt).datasets["train"]
        batch = load_batch(dataset, [0, 1, 2])
        assert batch["face"].shape[0] == 3
        rate = loader_rate(dataset, samples=16, rounds=2, batch_size=8)
        assert set(rate) == {"samples_per_s_per_core", "samples_per_s_wall"}
        assert all(np.isfinite(v) and v > 0 for v in rate.values()), rate
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (threads, cv_threads)
