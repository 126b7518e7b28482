"""The accuracy-versus-size report: ``python -m tinytracker.report runs=... out_dir=...``.

Runs (local ``metrics.json`` files, or a W&B sweep) -> their Pareto front of test error against
INT8 size (:mod:`.pareto`) -> a PNG scatter with the front and the papers' reference points
(:mod:`.figure`, :mod:`.references`) and a Markdown table of the Pareto-optimal runs with their
overrides (:mod:`.table`), all written by :mod:`.build`.
"""
