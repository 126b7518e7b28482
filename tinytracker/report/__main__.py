"""``python -m tinytracker.report runs=<dir, glob or wandb://entity/project/sweep> out_dir=<dir>``.

Writes ``pareto.png`` (error against INT8 size, the Pareto front, the papers' reference
points), ``pareto.md`` (the Pareto-optimal runs with their overrides) and ``runs.csv`` (every
run's point) to ``out_dir`` (:mod:`.build`), then prints the table and the paths.
"""

from __future__ import annotations

from tinytracker.cli import errors_exit, parse_args
from tinytracker.report.build import PROG, ReportConfig, build_report
from tinytracker.report.runs import ReportError


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(ReportConfig, argv, prog=PROG)
    with errors_exit(PROG, ReportError):
        paths = build_report(cfg)
    print(paths["md"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
