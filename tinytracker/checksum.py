"""The sha256 of a file: how a checkpoint is named in the files derived from it.

``deploy.json`` and the host head (:mod:`tinytracker.deploy`) record the checkpoint they were
cut from, and a saved calibration (:mod:`tinytracker.correction.saved`) the model it was fitted
on; both compare this digest. It sits in the bottom layer (``pyproject.toml``'s import
contracts) so that both, which may not import each other, share one definition.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK_BYTES = 1 << 20  # read 1 MiB at a time: a checkpoint need not fit in memory twice


def file_sha256(path: Path | str) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()
