"""Atomic writes: a reader (or the next run after a ``kill -9``) sees the old file or the new
one, never half of one.

A file is written to a temporary name in its own directory and moved over the target with
``os.replace`` (atomic on POSIX within one file system). A directory is built under a
temporary name beside its target and renamed into place when whole (:func:`building_dir`).
Temporary names carry the host and process id, so concurrent builders never share one, and
the leftovers of a killed process are removed by the next writer of the same target.

A full disk, or a directory that cannot be written, raises :class:`WriteError` naming the
path and the bytes that were to be written; the temporary file is removed, so no partial file
is left behind. This module is the lowest layer: it imports nothing of the package.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_HOST = socket.gethostname().replace("-", "_") or "host"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_NOT_ALLOWED = (errno.EACCES, errno.EPERM, errno.EROFS)


class WriteError(OSError):
    """A file or directory could not be written; the message names it and what was needed."""

    def __str__(self) -> str:
        return str(self.strerror)


def _tag() -> str:
    return f"{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>tmp|partial|old)-(?P<host>[^-]+)-"
                       r"(?P<pid>\d+)-[0-9a-f]{8}$")


def remove_leftovers(folder: str | os.PathLike, name: str | None = None) -> int:
    """Remove the temporary files and directories in ``folder`` (of target ``name``, or of
    any) left by writers on this host that no longer run (a killed process); a live
    writer's are left alone. Returns how many were removed."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if (m is None or (name is not None and m["name"] != name) or m["host"] != _HOST
                or _pid_alive(int(m["pid"]))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed += 1
    return removed


def explain(err: OSError, path: Path, needed_bytes: int | None) -> WriteError:
    """A :class:`WriteError` for ``err`` raised while writing ``path`` that says what to do."""
    need = f"{needed_bytes:,} bytes" if needed_bytes is not None else "its files"
    if err.errno in _NO_SPACE:
        try:
            free = f"{shutil.disk_usage(path.parent).free:,} bytes free"
        except OSError:
            free = "free space unknown"
        msg = (f"no space left to write {path}: it needs {need} ({free} on its disk); "
               "free some space or write elsewhere")
    elif err.errno in _NOT_ALLOWED:
        msg = (f"cannot write {path} ({os.strerror(err.errno)}): {need} to write; "
               "choose a directory you can write to")
    else:
        msg = f"cannot write {path} ({need}): {err}"
    return WriteError(err.errno or 0, msg)


@contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "wb",
                needed_bytes: int | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``,
    on any error (a full disk included) it is removed and ``path`` is left as it was."""
    path = Path(path)
    remove_leftovers(path.parent, path.name)
    tmp = path.with_name(f".{path.name}.tmp-{_tag()}")
    try:
        try:
            with open(tmp, mode) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as err:
            if isinstance(err, WriteError) or err.errno not in (*_NO_SPACE, *_NOT_ALLOWED):
                raise
            tmp.unlink(missing_ok=True)  # first, so the free space reported is the disk's
            raise explain(err, path, needed_bytes) from err
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """``path`` holds ``data``, written atomically."""
    with open_atomic(path, "wb", len(data)) as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``path`` holds ``text`` (UTF-8), written atomically."""
    return write_bytes(path, text.encode())


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1,
               sort_keys: bool = False, newline: bool = True) -> Path:
    """``path`` holds ``obj`` as JSON, written atomically."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + ("\n" if newline else "")
    return write_text(path, text)


@contextmanager
def building_dir(target: str | os.PathLike) -> Iterator[Path]:
    """A fresh temporary directory beside ``target`` to build it in; on success it replaces
    ``target`` (an earlier ``target`` is moved aside, then deleted), on error it is deleted.

    Two processes building the same ``target`` both succeed; the last rename wins, so build
    the same content in both (as every cache here does) or hold a lock.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise explain(err, target, None) from err
    remove_leftovers(target.parent, target.name)
    tmp = target.with_name(f".{target.name}.partial-{_tag()}")
    try:
        tmp.mkdir()
    except OSError as err:
        raise explain(err, target, None) from err
    try:
        yield tmp
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(src: Path, target: Path) -> None:
    """Rename the directory ``src`` to ``target``, moving an existing ``target`` aside first
    and deleting it after. A kill in between leaves no ``target``: it is rebuilt."""
    for _ in range(20):
        try:
            os.rename(src, target)  # replaces an empty directory, refuses a full one
            return
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
        aside = target.with_name(f".{target.name}.old-{_tag()}")
        try:
            os.rename(target, aside)
        except FileNotFoundError:  # another builder moved it aside first
            continue
        shutil.rmtree(aside, ignore_errors=True)
    raise OSError(f"could not move {src} to {target}: other processes keep replacing it")
