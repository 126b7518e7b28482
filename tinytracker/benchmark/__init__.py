"""Benchmarks of the framework against its references, measured side by side in one process.

``python -m tinytracker.benchmark out=<file.json>``: see :mod:`tinytracker.benchmark.__main__`.
Every figure is the median of several repeats after warm-up, and speed claims are ratios
against a reference measured in the same run, because machines are noisy.
"""
