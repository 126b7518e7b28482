"""Which code made a run: the git commit of the source checkout, and whether it was dirty.

Recorded in every run's ``metrics.json`` (``git/commit``, ``git/dirty``) and W&B config
(``git``). An installed wheel has no repository around it, a source tree may be a copied
folder without ``.git``, and a machine may lack ``git``: then both are ``None``; this never
fails a run.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

log = logging.getLogger(__name__)

GIT_TIMEOUT_S = 10.0


def git_state(checkout: Path | None) -> dict[str, str | bool | None]:
    """``{"git/commit": <40-hex sha> | None, "git/dirty": bool | None}`` for ``checkout``
    (the source checkout, :func:`tinytracker.locations.source_checkout`; ``None``: none).

    Only a repository whose top level is ``checkout`` itself counts, so a wheel unpacked into
    a folder inside some other repository never reports that repository's commit. Dirty means
    tracked files differ from the commit (staged or not); untracked files (run outputs, a
    local ``.venv``) do not count.
    """
    unknown: dict[str, str | bool | None] = {"git/commit": None, "git/dirty": None}
    if checkout is None:
        return unknown
    top = _git(checkout, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != Path(checkout).resolve():
        return unknown
    commit = _git(checkout, "rev-parse", "HEAD")
    status = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    if commit is None:  # a repository without a commit yet
        return unknown
    return {"git/commit": commit, "git/dirty": None if status is None else status != ""}


def _git(cwd: Path, *args: str) -> str | None:
    """``git args`` in ``cwd``: its stripped stdout, or ``None`` if git is missing or fails."""
    try:
        proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("git %s in %s failed: %s", " ".join(args), cwd, err)
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()
