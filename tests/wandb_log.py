"""Read what a W&B run logged from its binary ``run-<id>.wandb`` file, offline (tests only).

Offline runs keep everything in that file (no ``wandb-summary.json`` is written offline), and
the installed wandb (0.31) has no Python reader for it: ``wandb.sdk.internal.datastore`` went
with the Python backend (the Go ``wandb-core`` reads the file now) and ``wandb sync`` has no
``--view``. So it is parsed here, with wandb's own ``Record`` protobuf. The format is a
LevelDB-style log: a 7-byte file header (":W&B", magic 0xBEE1, version), then 32 KiB blocks
of chunks, each with a 7-byte header (crc32, uint16 length, uint8 type: 1 full, 2 first,
3 middle, 4 last).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER_BYTES = 7  # file header and chunk header alike
BLOCK_BYTES = 32768
FULL, FIRST, LAST = 1, 2, 4


def read_wandb_records(path: str | os.PathLike) -> Iterator[Any]:
    """Yield the ``wandb_internal_pb2.Record`` messages of a ``.wandb`` file."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run log (missing ':W&B' header)")
    pos, pending = HEADER_BYTES, b""
    while pos + HEADER_BYTES <= len(data):
        room = BLOCK_BYTES - pos % BLOCK_BYTES
        if room < HEADER_BYTES:  # block trailer padding
            pos += room
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        chunk = data[pos + HEADER_BYTES : pos + HEADER_BYTES + length]
        pos += HEADER_BYTES + length
        if kind == 0 and length == 0:
            continue
        pending = chunk if kind in (FULL, FIRST) else pending + chunk
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            yield record
            pending = b""


def run_log(run_dir: str | os.PathLike, timeout_s: float = 60.0) -> Path:
    """The ``.wandb`` file of a finished W&B run directory (``wandb/offline-run-*``, ``run-*``).

    ``run.finish()`` can return before ``wandb-core`` has written the log (seen in-process on
    a loaded machine: a 7-byte file that fills a second later), so this waits for the run's
    closing ``exit`` record."""
    files = sorted(Path(run_dir).glob("*.wandb"))
    if not files:
        raise FileNotFoundError(f"no .wandb log in {run_dir}")
    deadline = time.monotonic() + timeout_s
    while not any(r.WhichOneof("record_type") == "exit" for r in read_wandb_records(files[0])):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{files[0]} has no exit record after {timeout_s:.0f} s: "
                               "the run did not finish, or wandb-core did not write it")
        time.sleep(0.1)
    return files[0]


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else item.key


def read_wandb_summary(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Final summary of a W&B run directory (offline or online), from its ``.wandb`` log."""
    summary: dict[str, Any] = {}
    history: dict[str, Any] = {}  # W&B's summary defaults to each metric's last logged value
    for record in read_wandb_records(run_log(run_dir)):
        kind = record.WhichOneof("record_type")
        if kind == "summary":
            for item in record.summary.update:
                summary[_key(item)] = json.loads(item.value_json)
            for item in record.summary.remove:
                summary.pop(_key(item), None)
        elif kind == "history":
            for item in record.history.item:
                if not _key(item).startswith("_"):
                    history[_key(item)] = json.loads(item.value_json)
    return {**history, **summary}


def read_wandb_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The config a W&B run logged (top-level keys), from its ``.wandb`` log."""
    config: dict[str, Any] = {}
    for record in read_wandb_records(run_log(run_dir)):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                config[_key(item)] = json.loads(item.value_json)
    return config


def read_wandb_artifacts(run_dir: str | os.PathLike) -> list[Any]:
    """The artifacts a W&B run logged (``ArtifactRecord`` messages), in order."""
    return [r.artifact for r in read_wandb_records(run_log(run_dir))
            if r.WhichOneof("record_type") == "artifact"]


def read_wandb_run(run_dir: str | os.PathLike) -> Any:
    """The run's own record (``RunRecord``: id, project, ``tags``, ...), from its ``.wandb``
    log; the last one, as a resumed run writes another."""
    runs = [r.run for r in read_wandb_records(run_log(run_dir))
            if r.WhichOneof("record_type") == "run"]
    if not runs:
        raise ValueError(f"{run_dir} logged no run record")
    return runs[-1]
