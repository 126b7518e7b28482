"""The accuracy-versus-size report: ``python -m tinytracker.report runs=... out_dir=...``.

Runs (local run directories, or a W&B sweep; :mod:`.runs`, with the numbers of their
``export.json`` files, :mod:`.exports`) -> configurations: runs that differ only by seed,
with each metric's mean ± std (n) (:mod:`.seeds`) -> their Pareto front of mean test error
against INT8 size (:mod:`.pareto`) -> a PNG scatter with std error bars, the front and the
papers' reference points (:mod:`.figure`, :mod:`.references`), a Markdown table with the
overrides that made each row (:mod:`.table`, columns and presets in :mod:`.columns`) and CSV
files (:mod:`.csv_files`), all written by :mod:`.build`.
"""
