"""Lightning DataModule over the processed GazeCapture layout, real or synthetic.

``source="synthetic"`` generates a raw GazeCapture-layout dataset from a seed into a cache
directory on first use, then runs the same ``prepare`` and loader code as real data.
``source="gazecapture"`` reads ``root``: a processed directory (``metadata.mat`` + crops, as
written by the public iTracker script or by ours) loads as is; a raw directory is prepared
once into ``processed_dir``.

``format="packed"`` reads the crops from a pack (:mod:`tinytracker.data.packed`) instead of
decoding JPEGs; the pack is built on first use, and rebuilt when the processed data or the
image sizes change.
"""

from __future__ import annotations

import fcntl
import json
import logging
import time
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities.seed import isolate_rng
from torch.utils.data import DataLoader

from tinytracker.atomic import write_text
from tinytracker.data import packed
from tinytracker.data.dataset import IMAGE_FIELDS, GazeDataset, collate
from tinytracker.data.processed import (
    LAYOUT_HELP,
    SPLITS,
    DataFormatError,
    ProcessedIndex,
    find_missing_files,
    load_index,
)
from tinytracker.data.spec import GRID_CONVENTIONS, INTERPOLATIONS, SampleSpec
from tinytracker.data.transforms import AugmentConfig

log = logging.getLogger(__name__)

SOURCES = ("synthetic", "gazecapture")
FORMATS = ("jpeg", "packed")


class GazeDataModule(L.LightningDataModule):
    """The data of ``conf/data/*.yaml``; the defaults are those of ``synthetic.yaml``."""

    def __init__(
        self,
        name: str = "synthetic",
        source: str = "synthetic",
        root: str | None = None,
        processed_dir: str | None = None,
        cache_dir: str = ".cache/tinytracker",
        synthetic: dict[str, Any] | None = None,
        inputs: Sequence[str] = ("face",),
        face_size: int = 64,
        eye_size: int = 224,
        grey: bool = False,
        grid_embedding: bool = True,
        mean: float = 0.5,
        std: float = 0.5,
        grid_convention: str = "cell_edges",
        interpolation: str = "area",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        skip_bad: bool = False,
        augment: dict[str, Any] | None = None,
        seed: int = 0,
        format: str = "packed",
        packed_dir: str | None = None,
        pack_shard_mb: int = 1024,
    ) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"data.source must be one of {SOURCES}, got {source!r}")
        if format not in FORMATS:
            raise ValueError(f"data.format must be one of {FORMATS}, got {format!r}")
        if pack_shard_mb <= 0:
            raise ValueError(f"data.pack_shard_mb must be > 0, got {pack_shard_mb}")
        if batch_size <= 0:
            raise ValueError(f"data.batch_size must be > 0, got {batch_size}")
        for key, value, allowed in (("grid_convention", grid_convention, GRID_CONVENTIONS),
                                    ("interpolation", interpolation, INTERPOLATIONS)):
            if value not in allowed:
                raise ValueError(f"data.{key} must be one of {allowed}, got {value!r}")
        self.name = name
        self.source = source
        self.root = root
        self.processed_dir = processed_dir
        self.cache_dir = Path(cache_dir).expanduser()
        self.synthetic = dict(synthetic or {})
        self.spec = SampleSpec(tuple(inputs), face_size, eye_size, grey, mean, std, grid_embedding,
                               grid_convention, interpolation)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.skip_bad = skip_bad
        self.augment = AugmentConfig(**(augment or {}))
        self.seed = seed
        self.format = format
        self.packed_dir = packed_dir
        self.pack_shard_mb = pack_shard_mb
        self.index: ProcessedIndex | None = None
        self.datasets: dict[str, GazeDataset] = {}
        self.skipped_missing = 0
        # seconds spent generating (synthetic) and preparing data in this process; 0 when cached
        self.timings_s: dict[str, float] = {"generate": 0.0, "prepare": 0.0}

    # ----------------------------------------------------------------- locating data
    def set_inputs(self, inputs: Sequence[str]) -> None:
        """Fields the model consumes (``model.input_keys``); called before ``setup``."""
        self.spec.inputs = tuple(inputs)

    @property
    def processed_root(self) -> Path:
        if self.source == "synthetic":
            return self._synthetic_dir() / "processed"
        root = self._checked_root()
        if (root / "metadata.mat").is_file():
            return root
        if self.processed_dir:
            return Path(self.processed_dir).expanduser()
        return self.cache_dir / "gazecapture" / _slug(root) / "processed"

    def _checked_root(self) -> Path:
        if not self.root:
            raise DataFormatError(f"data.root is not set; {LAYOUT_HELP}")
        root = Path(self.root).expanduser()
        if not root.is_dir():
            raise DataFormatError(f"data.root={root} does not exist or is not a directory; "
                                  f"{LAYOUT_HELP}")
        return root

    def _synthetic_dir(self) -> Path:
        from tinytracker.data.synthetic import GENERATOR_VERSION

        keys = "-".join(f"{k}{v}" for k, v in sorted(self.synthetic.items()))
        return self.cache_dir / "synthetic" / f"v{GENERATOR_VERSION}-{keys or 'default'}"

    # ----------------------------------------------------------------- Lightning hooks
    def prepare_data(self) -> None:
        """Generate (synthetic), prepare (raw layout) and pack (``format=packed``) once; later
        runs reuse the cache.

        The run's random generators are left as they were: a first run that builds the cache
        trains as every later run of its seed does, not on draws moved by the build.
        """
        with isolate_rng():
            self.prepare_processed()
            if self.format == "packed":
                self.ensure_pack(self.filtered_index())

    def prepare_processed(self) -> None:
        """The processed layout (``metadata.mat`` + crops), generated or prepared if missing."""
        target = self.processed_root
        if (target / "metadata.mat").is_file() and self.source == "gazecapture":
            return
        with _file_lock(target.parent / ".lock"):
            if (target / "metadata.mat").is_file() and self._complete(target):
                return
            from tinytracker.data.prepare import prepare

            if self.source == "synthetic":
                raw = self._ensure_synthetic_raw()
            else:
                raw = self._checked_root()
                if not any(raw.glob("*/frames.json")):
                    raise DataFormatError(f"data.root={raw} holds neither metadata.mat nor "
                                          f"raw recordings; {LAYOUT_HELP}")
            log.info("preparing %s -> %s", raw, target)
            t0 = time.perf_counter()
            prepare(raw, target, skip_bad=self.skip_bad)
            self.timings_s["prepare"] = time.perf_counter() - t0
            from tinytracker.data.prepare import PREPARE_VERSION

            write_text(target / ".complete", str(PREPARE_VERSION))

    def _complete(self, target: Path) -> bool:
        """Prepared, and (our synthetic cache) by this version of ``prepare``: an older cache
        lacks the full frames and face boxes, and is prepared again (seconds)."""
        from tinytracker.data.prepare import PREPARE_VERSION

        done = target / ".complete"
        if not done.is_file():
            return False
        return self.source != "synthetic" or done.read_text().strip() == str(PREPARE_VERSION)

    def _ensure_synthetic_raw(self) -> Path:
        from tinytracker.data.synthetic import generate

        raw = self._synthetic_dir() / "raw"
        done = raw / ".complete"
        if not done.is_file():
            log.info("generating the synthetic dataset into %s (once; cached after)", raw)
            t0 = time.perf_counter()
            generate(out_dir=raw, **self.synthetic)
            self.timings_s["generate"] = time.perf_counter() - t0
            done.touch()
        return raw

    def setup(self, stage: str | None = None) -> None:
        if self.index is not None:
            return
        index = self.filtered_index()
        pack = self.ensure_pack(index) if self.format == "packed" else None
        self.index = index
        for split in SPLITS:
            part = index.split_of(split)
            if len(part) == 0:
                raise DataFormatError(f"{index.root / 'metadata.mat'} has no '{split}' frames")
            augment = self.augment if split == "train" else None
            if pack is None:
                self.datasets[split] = GazeDataset(part, self.spec, augment, self.skip_bad)
            else:
                self.datasets[split] = packed.PackedDataset(
                    part, packed.PackedSplit(pack, split), self.spec, augment, self.skip_bad)

    def filtered_index(self) -> ProcessedIndex:
        """``metadata.mat`` of the processed data, less frames without crops (``skip_bad``)."""
        index = load_index(self.processed_root)
        fields = tuple(f for f in IMAGE_FIELDS if f in self.spec.inputs)
        missing = find_missing_files(index, fields)
        if missing.any():
            first = int(np.flatnonzero(missing)[0])
            msg = (f"{int(missing.sum())} frame(s) listed in {index.root / 'metadata.mat'} have "
                   f"no crop on disk, e.g. recording {index.rec_num[first]:05d} frame "
                   f"{index.frame_index[first]:05d}")
            if "frame" in fields:
                msg += (" (model.position=frame reads NNNNN/frames/, the full frames our "
                        "python -m tinytracker.data.prepare links into the processed data "
                        "since its version 2; a directory of the public prepareDataset.py or of "
                        "an older prepare has none: run prepare on the raw data again)")
            if not self.skip_bad:
                raise DataFormatError(msg + " (set data.skip_bad=true to skip them)")
            log.warning("%s; skipping them (data.skip_bad=true)", msg)
            self.skipped_missing = int(missing.sum())
            index = index.select(~missing)
        return index

    # ----------------------------------------------------------------- packed format
    @property
    def pack_root(self) -> Path:
        """``data.packed_dir``, or beside the processed data when it is our cache."""
        if self.packed_dir:
            return Path(self.packed_dir).expanduser()
        processed = self.processed_root
        if processed.resolve().is_relative_to(self.cache_dir.resolve()):
            return processed.parent / "packed"
        return self.cache_dir / "packed" / _slug(processed)

    def ensure_pack(self, index: ProcessedIndex, force: bool = False,
                    progress: bool = True) -> Path:
        """Path of an up-to-date pack of ``index`` for this model's inputs, built if needed."""
        fields, interpolation = packed.pack_fields(self.spec), self.spec.interpolation
        path = self.pack_root / packed.pack_name(fields, interpolation)
        expected = packed.fingerprint(index, fields, interpolation)
        if not force and packed.stale_reason(path, expected) is None:
            return path
        with _file_lock(self.pack_root / ".lock"):
            reason = "forced" if force else packed.stale_reason(path, expected)
            if reason is None:  # another process packed it while we waited
                return path
            if reason != "absent":
                log.warning("pack %s is stale (%s); rebuilding it", path, reason)
            log.info("packing %s into %s", index.root, path)
            packed.build_pack(index, fields, path, expected, self.pack_shard_mb,
                              self.num_workers, self.skip_bad, progress)
        return path

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            sampler=None if split == "train" else self._eval_sampler(split),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
            collate_fn=collate,
        )

    def _eval_sampler(self, split: str) -> UnrepeatedDistributedSampler | None:
        """Under DDP, each validation/test frame on exactly one rank.

        Lightning's default DistributedSampler pads every rank to the same length by repeating
        frames, which would count some frames twice in a distributed test error; this sampler
        gives ranks one frame more or less instead (the metrics sum errors and counts across
        ranks, so the result equals the single-process one). Training keeps Lightning's
        sampler (``trainer.use_distributed_sampler``): there even batches matter, a repeated
        frame does not.
        """
        trainer = self.trainer
        if trainer is None or trainer.world_size <= 1:
            return None
        return UnrepeatedDistributedSampler(self.datasets[split], num_replicas=trainer.world_size,
                                            rank=trainer.global_rank, shuffle=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----------------------------------------------------------------- reference numbers
    def mean_predictor_error_cm(self, split: str = "test") -> float:
        """Mean Euclidean error of always predicting the training-set mean gaze point."""
        assert self.index is not None, "call setup() first"
        mean = self.index.split_of("train").gaze_cm.mean(axis=0)
        target = self.index.split_of(split).gaze_cm
        return float(np.linalg.norm(target - mean, axis=1).mean())

    def irreducible_error_cm(self) -> float | None:
        """The synthetic set's floor on its test subjects: the error of an ideal uncalibrated
        iris reader (``reference_errors_cm.irreducible`` in its ``SYNTHETIC.json``; see
        :mod:`tinytracker.data.synthetic`). ``None`` for real data, where no floor is known."""
        if self.source != "synthetic":
            return None
        path = self._synthetic_dir() / "raw" / "SYNTHETIC.json"
        try:
            return float(json.loads(path.read_text())["reference_errors_cm"]["irreducible"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("no irreducible error from %s (%s)", path, err)
            return None


def _slug(path: Path) -> str:
    return str(path.resolve()).strip("/").replace("/", "_")


@contextmanager
def _file_lock(path: Path):
    """Serialise generation/preparation across processes (DDP ranks, parallel tests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
