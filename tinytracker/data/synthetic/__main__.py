"""``python -m tinytracker.data.synthetic out_dir=... seed=0 subjects=120 frames_per_subject=30``.

Every :class:`~tinytracker.data.synthetic.params.SyntheticParams` field is a ``key=value``
argument; prints the :class:`~tinytracker.data.synthetic.build.GenerationReport` as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import MISSING

from tinytracker.cli import parse_args
from tinytracker.data.synthetic.build import generate
from tinytracker.data.synthetic.params import SyntheticParams

PROG = "tinytracker.data.synthetic"


@dataclass
class SyntheticArgs(SyntheticParams):
    """``python -m tinytracker.data.synthetic`` arguments."""

    out_dir: str = MISSING
    workers: int = 0  # processes; 0 = one per CPU; does not change the output


def main(argv: list[str] | None = None) -> None:
    try:  # SyntheticParams.__post_init__ validates values while parse_args builds it
        args = parse_args(SyntheticArgs, argv, prog=PROG)
        values = asdict(args)
        out_dir, workers = values.pop("out_dir"), values.pop("workers")
        report = generate(out_dir, workers=workers, **values)
    except (ValueError, FileExistsError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(json.dumps({k: str(v) if isinstance(v, Path) else v
                      for k, v in asdict(report).items()}, indent=1))


if __name__ == "__main__":
    main()
