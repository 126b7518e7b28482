"""Command-line conventions shared by every ``python -m tinytracker.<command>``.

Every command takes the same ``key=value`` arguments as the Hydra training entry point; the
small ones that are not Hydra apps validate them against a dataclass (:func:`parse_args`), so
a typo fails with the key named. Errors the user can fix print ``<command>: error: ...`` and
exit 1 (:func:`errors_exit`); results print as JSON (:func:`print_json`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

T = TypeVar("T")


def parse_args(schema: type[T], argv: Sequence[str] | None = None, prog: str = "") -> T:
    """Parse ``key=value`` arguments into an instance of the dataclass ``schema``.

    Missing required keys (``???`` defaults), unknown keys and values of the wrong type fail
    with a message naming the key. ``--help`` prints the keys with their defaults.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    base = OmegaConf.structured(schema)
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: python -m {prog} key=value ...\n\nkeys and defaults:")
        print(OmegaConf.to_yaml(base))
        raise SystemExit(0)
    bad = [a for a in argv if "=" not in a]
    if bad:
        _fail(f"arguments must be key=value, got {bad!r}", prog)
    try:
        cfg = OmegaConf.merge(base, OmegaConf.from_dotlist(argv))
        missing = sorted(OmegaConf.missing_keys(cfg))
        if missing:
            _fail(f"missing required argument(s): {', '.join(k + '=...' for k in missing)}", prog)
        obj: Any = OmegaConf.to_object(cfg)
    except (ConfigKeyError, ValidationError) as err:
        _fail(f"bad argument: {err.msg if hasattr(err, 'msg') else err}", prog)
    return obj


def _fail(message: str, prog: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


@contextmanager
def errors_exit(prog: str, *errors: type[Exception]) -> Iterator[None]:
    """Turn the expected ``errors`` (bad input the message explains) into ``prog: error: ...``
    on stderr and exit status 1, without a traceback; anything else still raises."""
    try:
        yield
    except errors as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err


def print_json(result: Any) -> None:
    """Print a command's result (a dataclass or a dict) as JSON, paths as strings."""
    values = asdict(result) if is_dataclass(result) else dict(result)
    print(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in values.items()},
                     indent=1))


def refuse_overwrite(out: str | Path, patterns: Sequence[str], overwrite: bool,
                     key: str = "out_dir") -> None:
    """Refuse to write into ``out`` (a folder, or a file when ``patterns`` is empty) when it
    already holds what a command writes (``patterns``: names or globs), unless ``overwrite``:
    a user's earlier results are never replaced silently."""
    out = Path(out)
    if overwrite:
        return
    if not patterns:
        if out.exists():
            raise FileExistsError(f"{key}={out} already exists; pass overwrite=true to "
                                  f"replace it, or choose another {key}")
        return
    if not out.is_dir():
        return
    found = sorted({p.name for pattern in patterns for p in out.glob(pattern)})
    if found:
        raise FileExistsError(f"{key}={out} already holds {', '.join(found)} from an earlier "
                              f"run; pass overwrite=true to replace them, or choose another "
                              f"{key}")


def experiment_alias(argv: Sequence[str]) -> list[str]:
    """``experiment=<name>`` as a synonym of Hydra's ``+experiment=<name>``.

    Experiments are appended to the defaults list (``+experiment=``), but W&B sweep parameter
    names must match ``[A-Za-z_][A-Za-z0-9_.-]*``, so a sweep over experiments can only pass
    ``experiment=<name>``, which Hydra refuses for a group absent from the defaults list. (An
    ``experiment: null`` defaults entry would accept ``experiment=`` but refuse the documented
    ``+experiment=``.)
    """
    return [f"+{a}" if a.startswith("experiment=") else a for a in argv]
