"""``python -m tinytracker.report runs=<dir, glob or wandb://entity/project/sweep> out_dir=<dir>``.

Writes to ``out_dir`` (:mod:`.build`), then prints the table and the paths:

- ``pareto.png``: error against INT8 size, the Pareto front, the papers' reference points;
- ``pareto.md``: the Pareto-optimal configurations with their overrides;
- ``runs.csv``: every run's point, its configuration (``config``) and ``seed``;
- ``configs.csv``: every configuration's ``mean``, ``std`` and ``n`` of each column, its seeds.

Seeds: runs whose saved configs (``.hydra/config.yaml``) are equal except for ``seed`` and the
keys that never define a configuration (output paths, logger/W&B names and ids, ``tags``,
Hydra's runtime fields: ``tinytracker.report.seeds.NOT_CONFIGURATION``) are one
configuration, e.g. the jobs of ``python -m tinytracker.train -m seed=0,1,2 ...``. Its numbers
print as ``mean ± std (n)`` (sample std, ddof=1; ``—`` for one run), ``n of N`` where it has
fewer runs than the configurations with the most; the front uses the means and the figure
draws ± std error bars. With one run per configuration the report is the table of runs it
always was. A run directory with a saved training config and no ``metrics.json`` (crashed)
is listed as skipped.

``table=ablation`` adds ``ablation.md`` (printed instead): every configuration with float
test error (``test/error_cm_float_reference``, else ``test/error_cm``), QAT INT8 error
(``test/error_cm`` where ``quant/mode`` is ``qat``), IMX500 MCT error
(``export/imx500/test/error_cm``), emulated camera error
(``export/imx500/imx500/emulated_test_error_cm``), ``model/params``, ``model/macs`` and
IMX500 memory (``export/imx500/imx500/memory_usage_bytes``). ``export/<format>/<key>`` is
``<key>`` of the ``export.json`` made from the run: one whose ``checkpoint`` lies in the run
directory, or that lies in it itself, found anywhere under ``runs=``.
``columns=[key,key1|key2,...]`` replaces the table's metric columns (``key1|key2``: each
run's first present); a value no run of a configuration has prints ``—``.
"""

from __future__ import annotations

from tinytracker.cli import errors_exit, parse_args
from tinytracker.report.build import PROG, ReportConfig, build_report
from tinytracker.report.runs import ReportError


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(ReportConfig, argv, prog=PROG)
    with errors_exit(PROG, ReportError):
        paths = build_report(cfg)
    print(paths["md"].read_text())  # the chosen table: pareto.md, or ablation.md
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
