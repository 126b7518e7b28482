"""Where the package finds what lives outside it: its source checkout and the authors' models.

An installed wheel has no repository around it, so nothing may assume one; a source checkout
(``pip install -e .``, what the README installs) is recognised by its ``pyproject.toml``.
"""

from __future__ import annotations

import os
from pathlib import Path

ANCHORS_ENV = "TINYTRACKER_ANCHORS"
PACKAGE_DIR = Path(__file__).resolve().parent


def source_checkout() -> Path | None:
    """The repository root when the package is imported from a source checkout, else ``None``
    (a wheel's parent folder is ``site-packages``, which holds no ``pyproject.toml``)."""
    root = PACKAGE_DIR.parent
    return root if (root / "pyproject.toml").is_file() else None


def anchors_dir() -> Path:
    """The folder of the authors' released models (``TinyTracker.tflite``, ...).

    ``$TINYTRACKER_ANCHORS`` when set, else ``shared/anchors`` beside the checkout (beside the
    current directory for an installed wheel), where the project's machines keep them.
    """
    configured = os.environ.get(ANCHORS_ENV)
    if configured:
        return Path(configured).expanduser()
    return (source_checkout() or Path.cwd()).parent / "shared" / "anchors"
