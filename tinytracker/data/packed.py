"""Packed data format: every split's crops decoded and resized once, in a few large shards.

Decoding a JPEG per crop per epoch starves a GPU on GazeCapture's 1.5 million frames. A pack
holds the crops a model consumes (``face``, and ``eye_left``/``eye_right`` for iTracker)
already resized to the model's input size, as RGB uint8, in NumPy ``.npy`` shards that the
DataLoader memory-maps. Augmentation, normalisation, grey conversion and the face grid and
grid embedding stay on the fly, in the same code as the JPEG path
(:class:`~tinytracker.data.dataset.GazeDataset`), so a pack changes where pixels come from and
nothing else.

Why NumPy memory maps rather than LitData or WebDataset:

* **Random access by row.** Any sampler works unchanged: shuffling, Lightning's
  ``DistributedSampler`` under DDP, the unrepeated sampler of distributed evaluation. The
  packed path therefore yields exactly the JPEG path's batches for a seed (tested).
  WebDataset and LitData stream shards sequentially with shuffle buffers and their own
  per-rank splitting, so epoch order and DDP sharding would differ from the JPEG path.
* **Nothing to decode or deserialise.** A sample is a slice of a uint8 array; the OS page
  cache shares it between DataLoader workers and between the DDP ranks of a node.
* **No new dependency**, and the format is readable by anything that reads ``.npy``.

The price is size: pixels are stored uncompressed (a 112x112 RGB face is 37.6 kB, so
GazeCapture's 1.5 M frames take ~56 GB for TinyTracker, and ~450 kB a frame for iTracker's
224 px face and eyes): keep packs on local disk.

Layout (``<packed_dir>/<name>/``, ``name`` from the fields and sizes, e.g. ``face112``)::

    PACK.json                 fingerprint, per split: frames, shards, unreadable rows
    train-face-00000.npy      (frames, S, S, 3) uint8, rows in the split's metadata.mat order
    ...

A pack is keyed to what it was made from (:func:`fingerprint`): the SHA-256 of
``metadata.mat``, the frames of each split in order, the modification times of the crop
folders, the fields and their sizes, and the format version. A pack whose key differs is
stale: it is rebuilt (with a warning saying why), never used.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from tinytracker.atomic import WriteError, building_dir, explain, write_json
from tinytracker.data.dataset import (
    FACE_SIZED,
    IMAGE_FIELDS,
    GazeDataset,
    face_boxes,
    load_resized_crop,
)
from tinytracker.data.geometry import face_grid_mask, grid_embedding
from tinytracker.data.processed import (
    IMAGE_FOLDERS,
    SPLITS,
    DataFormatError,
    ProcessedIndex,
)
from tinytracker.data.spec import SampleSpec
from tinytracker.data.transforms import AugmentConfig, to_tensor_layout_batch

log = logging.getLogger(__name__)

PACK_VERSION = 1
META_FILE = "PACK.json"


def pack_fields(spec: SampleSpec) -> dict[str, int]:
    """Image fields a model reads (``spec.inputs``) and their sizes in pixels."""
    fields = {name: spec.image_size(name) for name in IMAGE_FOLDERS if name in spec.inputs}
    if not fields:
        raise ValueError(f"data.format=packed needs an image input, got inputs {spec.inputs}")
    return fields


def pack_name(fields: dict[str, int], interpolation: str = "area") -> str:
    """``face112``...; a pack resized with another filter than ours says which (``-bilinear``)."""
    name = "-".join(f"{name}{size}" for name, size in fields.items())
    return name if interpolation == "area" else f"{name}-{interpolation}"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(index: ProcessedIndex, fields: dict[str, int],
                interpolation: str = "area") -> dict[str, Any]:
    """What a pack is made from; a pack is used only while this is unchanged.

    Crop folders are keyed by their modification time (which changes when a crop is added,
    removed or replaced by a rename, as ``prepare`` writes them), not by hashing every JPEG,
    so the check stays cheap at GazeCapture's size. ``interpolation``: the resize filter
    (recorded when it is not ours, so packs made before it was a choice stay valid).
    """
    rows = hashlib.sha256()
    for split in SPLITS:
        part = index.split_of(split)
        rows.update(split.encode())
        rows.update(np.ascontiguousarray(part.rec_num, dtype=np.int64).tobytes())
        rows.update(np.ascontiguousarray(part.frame_index, dtype=np.int64).tobytes())
    folders = hashlib.sha256()
    for rec in np.unique(index.rec_num):
        for name in fields:
            folder = index.root / f"{int(rec):05d}" / IMAGE_FOLDERS[name]
            try:
                stamp = folder.stat().st_mtime_ns
            except FileNotFoundError:
                stamp = -1
            folders.update(f"{int(rec)}/{name}:{stamp};".encode())
    extra = {} if interpolation == "area" else {"interpolation": interpolation}
    return {
        "version": PACK_VERSION,
        "fields": dict(fields),
        **extra,
        "frames": len(index),
        "metadata_sha256": _sha256_file(index.root / "metadata.mat"),
        "rows_sha256": rows.hexdigest(),
        "crop_folders_sha256": folders.hexdigest(),
    }


def stale_reason(path: Path, expected: dict[str, Any]) -> str | None:
    """``None`` if the pack at ``path`` matches ``expected``, else why it cannot be used."""
    meta_path = path / META_FILE
    if not meta_path.is_file():
        return "absent"
    try:
        found = json.loads(meta_path.read_text()).get("fingerprint", {})
    except json.JSONDecodeError:
        return f"{meta_path} is not valid JSON"
    labels = {"version": "pack format version", "fields": "fields or sizes",
              "frames": "number of frames", "metadata_sha256": "metadata.mat",
              "rows_sha256": "frames of a split", "crop_folders_sha256": "crop folders",
              "interpolation": "resize filter"}
    changed = [labels.get(k, k) for k in expected if found.get(k) != expected[k]]
    return f"changed since it was packed: {', '.join(changed)}" if changed else None


class _CropReader(Dataset):
    """Resized crops of every row of one split, for packing in DataLoader workers."""

    def __init__(self, index: ProcessedIndex, fields: dict[str, int],
                 interpolation: str = "area") -> None:
        self.index, self.fields, self.interpolation = index, fields, interpolation

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[int, dict[str, np.ndarray] | None, str]:
        rec, frame = int(self.index.rec_num[i]), int(self.index.frame_index[i])
        try:
            crops = {name: load_resized_crop(self.index.root, rec, frame, name, size,
                                             self.interpolation)
                     for name, size in self.fields.items()}
        except DataFormatError as err:
            return i, None, str(err)
        return i, crops, ""


def _as_list(batch: list) -> list:
    return batch


def _shard_frames(fields: dict[str, int], shard_mb: int) -> int:
    frame_bytes = sum(size * size * 3 for size in fields.values())
    return max(1, (shard_mb << 20) // frame_bytes)


def build_pack(index: ProcessedIndex, fields: dict[str, int], path: Path,
               expected: dict[str, Any], shard_mb: int = 1024, workers: int = 0,
               skip_bad: bool = False, progress: bool = True) -> Path:
    """Write the pack of ``index`` to ``path`` (built beside it, then moved into place).

    An unreadable crop stops packing with an error naming the file, unless ``skip_bad``:
    then the row is recorded as unreadable and skipped at load time, as the JPEG path does.
    """
    frame_bytes = sum(size * size * 3 for size in fields.values())
    _check_disk(path.parent, frame_bytes * len(index))
    t0 = time.perf_counter()
    splits = {}
    # every shard and PACK.json land in a temporary directory that replaces `path` when
    # whole: a killed packer leaves the earlier pack or none (its leftover is removed next time)
    with building_dir(path) as tmp:
        interpolation = expected.get("interpolation", "area")
        for split in SPLITS:
            splits[split] = _pack_split(index.split_of(split), fields, tmp, split, shard_mb,
                                        workers, skip_bad, progress, interpolation)
        meta = {"fingerprint": expected, "source": str(index.root), "splits": splits,
                "packed_s": round(time.perf_counter() - t0, 1)}
        write_json(tmp / META_FILE, meta, indent=1)
    return path


def _check_disk(folder: Path, needed_bytes: int) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise explain(err, folder, needed_bytes) from err
    free = shutil.disk_usage(folder).free
    if needed_bytes > free:
        raise WriteError(errno.ENOSPC,
                         f"packing needs {needed_bytes:,} bytes ({needed_bytes / 1e9:.2f} GB) but "
                         f"{folder} has {free:,} bytes free; set data.packed_dir to a larger "
                         "local disk")


def _new_shard(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A writable memory map of a new ``.npy`` shard, its disk space allocated first: a sparse
    map would die of SIGBUS when the disk fills, an allocation fails with ENOSPC instead."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    try:
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as err:
        del array
        raise explain(err, path, os.stat(path).st_size) from err
    return array


def _pack_split(index: ProcessedIndex, fields: dict[str, int], out: Path, split: str,
                shard_mb: int, workers: int, skip_bad: bool, progress: bool,
                interpolation: str = "area") -> dict[str, Any]:
    per_shard = _shard_frames(fields, shard_mb)
    shards, bad_rows = [], []
    arrays: dict[str, np.ndarray] = {}
    loader = DataLoader(_CropReader(index, fields, interpolation), batch_size=64,
                        num_workers=workers, collate_fn=_as_list)
    bar = tqdm(total=len(index), desc=f"packing {split} {pack_name(fields, interpolation)}",
               unit="frame",
               disable=not progress)
    for batch in loader:
        for i, crops, error in batch:
            k, row = divmod(i, per_shard)
            if row == 0:  # first row of a new shard
                frames = min(per_shard, len(index) - i)
                files = {name: f"{split}-{name}-{k:05d}.npy" for name in fields}
                arrays = {name: _new_shard(out / files[name], (frames, s, s, 3))
                          for name, s in fields.items()}
                shards.append({"frames": frames, "files": files})
            if crops is None:
                if not skip_bad:
                    raise DataFormatError(f"{error} (set data.skip_bad=true to skip it)")
                log.warning("packing: unreadable crop, skipped at load time: %s", error)
                bad_rows.append({"row": i, "error": error})
                continue
            for name, image in crops.items():
                arrays[name][row] = image
        bar.update(len(batch))
    bar.close()
    for array in arrays.values():
        array.flush()
    return {"frames": len(index), "shards": shards, "bad_rows": bad_rows}


class PackedSplit:
    """Read access to one split of a pack: row -> uint8 crop, through lazy memory maps.

    The maps are opened on first use in each process (DataLoader worker, DDP rank) and not
    pickled: a pickled ``np.memmap`` would copy its whole file.
    """

    def __init__(self, path: Path, split: str) -> None:
        meta = json.loads((path / META_FILE).read_text())
        info = meta["splits"][split]
        self.path, self.split = path, split
        self.fields: dict[str, int] = meta["fingerprint"]["fields"]
        self.interpolation: str = meta["fingerprint"].get("interpolation", "area")
        self.frames = int(info["frames"])
        self.files = [shard["files"] for shard in info["shards"]]
        self.starts = np.cumsum([0] + [s["frames"] for s in info["shards"]])[:-1]
        self.bad = {int(b["row"]): b["error"] for b in info["bad_rows"]}
        self._maps: dict[str, list[np.ndarray]] | None = None

    def __len__(self) -> int:
        return self.frames

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}

    def _open(self) -> dict[str, list[np.ndarray]]:
        if self._maps is None:
            self._maps = {name: [_load_shard(self.path / f[name]) for f in self.files]
                          for name in self.fields}
        return self._maps

    def image(self, row: int, name: str) -> np.ndarray:
        """A writable copy of the uint8 ``(S, S, 3)`` crop ``name`` of ``row``."""
        if row in self.bad:
            raise DataFormatError(f"unreadable when packed: {self.bad[row]}")
        shard = int(np.searchsorted(self.starts, row, side="right")) - 1
        return np.array(self._open()[name][shard][row - self.starts[shard]])

    def rows(self, rows: list[int], name: str) -> np.ndarray:
        """The uint8 ``(len(rows), S, S, 3)`` crops ``name`` of ``rows``, in that order."""
        size = self.fields[name]
        out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
        shards = np.searchsorted(self.starts, rows, side="right") - 1
        maps = self._open()[name]
        for k, (row, shard) in enumerate(zip(rows, shards, strict=True)):
            out[k] = maps[shard][row - self.starts[shard]]
        return out


def _load_shard(path: Path) -> np.ndarray:
    """A shard as a read-only memory map; never unpickles (a shard is uint8 pixels)."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DataFormatError(f"pack shard {path} is not a uint8 .npy array ({err}); "
                              "delete the pack folder to rebuild it") from err
    if array.dtype != np.uint8 or array.ndim != 4:
        raise DataFormatError(f"pack shard {path} holds {array.dtype} {array.shape}, expected "
                              "uint8 (frames, S, S, 3); delete the pack folder to rebuild it")
    return array


class PackedDataset(GazeDataset):
    """:class:`GazeDataset` whose resized crops come from a pack instead of JPEG files.

    Besides per-sample access it assembles whole batches (``__getitems__``, which PyTorch's
    DataLoader calls with a batch of indices): one copy from the maps per crop and one
    vectorised normalisation per batch, with the values of stacking ``__getitem__`` samples
    (tested) and augmentation still per sample, in the same order.
    """

    def __init__(self, index: ProcessedIndex, packed: PackedSplit, spec: SampleSpec,
                 augment: AugmentConfig | None = None, skip_bad: bool = False) -> None:
        super().__init__(index, spec, augment, skip_bad)
        if len(packed) != len(index):
            raise DataFormatError(f"{packed.path} holds {len(packed)} '{packed.split}' frames "
                                  f"but {index.root / 'metadata.mat'} lists {len(index)}")
        self.images = tuple(n for n in IMAGE_FIELDS if n in spec.inputs)
        for name in self.images:
            if packed.fields.get(name) != spec.image_size(name):
                raise DataFormatError(f"{packed.path} holds {name} at "
                                      f"{packed.fields.get(name)} px, the model needs "
                                      f"{spec.image_size(name)}")
        if packed.interpolation != spec.interpolation:
            raise DataFormatError(f"{packed.path} holds crops resized with "
                                  f"interpolation={packed.interpolation}, the model needs "
                                  f"{spec.interpolation}")
        self.packed = packed

    def _image(self, i: int, name: str, size: int) -> np.ndarray:
        return self.packed.image(i, name)  # an unreadable row's error names its JPEG

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor] | list:
        rows = [int(i) for i in indices]
        if any(r in self.packed.bad for r in rows):  # __getitem__ replaces unreadable frames
            return [self[r] for r in rows]
        spec, idx = self.spec, self.index
        images = {name: self.packed.rows(rows, name) for name in self.images}
        if self.augment is not None:  # sample by sample, field by field, as __getitem__
            for k in range(len(rows)):
                for batch in images.values():
                    batch[k] = self.augment(image=batch[k])["image"]
        out = {
            "gaze_cm": torch.from_numpy(idx.gaze_cm[rows]),
            "face_grid": torch.from_numpy(np.stack([face_grid_mask(g)
                                                    for g in idx.face_grid[rows]])),
            "rec_num": torch.from_numpy(idx.rec_num[rows]),
            "frame_index": torch.from_numpy(idx.frame_index[rows]),
        }
        for name, batch in images.items():
            grey = spec.grey and name in FACE_SIZED
            out[name] = torch.from_numpy(to_tensor_layout_batch(batch, grey, spec.mean, spec.std))
        if "face_box" in spec.inputs:
            out["face_box"] = torch.from_numpy(face_boxes(idx, rows))
        if "grid_embedding" in spec.inputs:
            emb = np.empty((len(rows), 2, spec.face_size, spec.face_size), dtype=np.float32)
            for k, grid in enumerate(idx.face_grid[rows]):
                grid_embedding(grid, spec.face_size, spec.face_size, out=emb[k],
                               convention=spec.grid_convention)
            out["grid_embedding"] = torch.from_numpy(emb)
        return out
