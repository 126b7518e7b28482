"""``python -m tinytracker.data.synthetic out_dir=... seed=0 subjects=120 frames_per_subject=30``.

Every :class:`~tinytracker.data.synthetic.params.SyntheticParams` field is a ``key=value``
argument; prints the :class:`~tinytracker.data.synthetic.build.GenerationReport` as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from omegaconf import MISSING

from tinytracker.atomic import WriteError
from tinytracker.cli import errors_exit, parse_args, print_json
from tinytracker.data.synthetic.build import generate
from tinytracker.data.synthetic.params import SyntheticParams

PROG = "tinytracker.data.synthetic"


@dataclass
class SyntheticArgs(SyntheticParams):
    """``python -m tinytracker.data.synthetic`` arguments."""

    out_dir: str = MISSING
    workers: int = 0  # processes; 0 = one per CPU; does not change the output


def main(argv: list[str] | None = None) -> None:
    # SyntheticParams.__post_init__ validates values while parse_args builds it
    with errors_exit(PROG, ValueError, FileExistsError, WriteError):
        values = asdict(parse_args(SyntheticArgs, argv, prog=PROG))
        out_dir, workers = values.pop("out_dir"), values.pop("workers")
        report = generate(out_dir, workers=workers, **values)
    print_json(report)


if __name__ == "__main__":
    main()
