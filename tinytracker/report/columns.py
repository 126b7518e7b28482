"""The report table's columns: which metric each reads, and how a cell prints.

A column reads one metric key of a run's ``metrics.json`` or of its exports
(``export/<format>/<key>``, :mod:`.exports`); with several keys, each run's first present.
The unit comes from the key's name (``_cm``: 3 decimals; ``_bytes``: KB; params and MACs:
k/M/G), so a user's own column prints like the presets' do. Presets (``table=``):

``pareto`` (the default): the Pareto front's configurations, by size:
    error (``error_metric``, default ``test/error_cm``), INT8 size (``size_metric``, default
    ``model/size_int8_bytes``), ``model/params``, ``model/macs``, ``model/name``,
    ``quant/weight_bits``.
``ablation`` (issue 15's table): every configuration, by float error:
    float test error (``test/error_cm_float_reference``, which a QAT/PTQ run writes, else a
    float run's ``test/error_cm``); QAT INT8 error (``test/error_cm`` of runs with
    ``quant/mode`` = ``qat``); IMX500-bound error (``export/imx500/test/error_cm``: the
    MCT-quantized model that ``format=imx500`` evaluates on the test split's crops); emulated
    camera error (``export/imx500/imx500/emulated_test_error_cm``: the ROI on the full frame,
    the ISP's scaling, the input as ``dnnParams.xml`` quantises it, the MCT graph in ONNX
    Runtime, then the host head); ``model/params``;
    ``model/macs``; IMX500 memory (``export/imx500/imx500/memory_usage_bytes``, the
    converter's memory report).

``columns=[key,key1|key2,...]`` replaces a preset's metric columns (its rows stay).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tinytracker.report.references import KB
from tinytracker.report.runs import ReportError
from tinytracker.report.seeds import Configuration, Stat

MISSING = "—"


@dataclass(frozen=True)
class Column:
    """A metric column: a mean ± std over each configuration's runs."""

    label: str                       # Markdown header
    csv_name: str                    # CSV header stem (``<csv_name> mean``, ``... std``, ``... n``)
    keys: tuple[str, ...]            # metric keys, each run's first present
    unit: str                        # cm | kb | count | s | plain
    when: tuple[str, Any] | None = None  # only runs whose metric key has this value

    def stat(self, config: Configuration) -> Stat | None:
        return config.stat(self.keys, self.when)


@dataclass(frozen=True)
class TextColumn:
    """An entry that names rather than measures (``model/name``): the first run's."""

    label: str
    key: str
    default: str = ""


@dataclass(frozen=True)
class TableSpec:
    """Which configurations the table lists (the front, or all by the first column's mean),
    and its columns."""

    name: str                        # also the Markdown file's stem for rows="all"
    rows: str                        # front | all
    columns: tuple[Column, ...]
    text: tuple[TextColumn, ...]


def unit_of(key: str) -> str:
    """The unit a metric key names (CONVENTIONS: units in names)."""
    if key.endswith("_cm"):
        return "cm"
    if key.endswith("_bytes"):
        return "kb"
    if key.endswith(("params", "macs", "macs_pointwise")):
        return "count"
    if key.endswith("_s"):
        return "s"
    return "plain"


def table_spec(table: str, error_key: str, size_key: str,
               columns: Sequence[str] | None) -> TableSpec:
    """The preset ``table`` (``pareto`` or ``ablation``), its metric columns replaced by
    ``columns`` when given."""
    presets = {"pareto": _pareto(error_key, size_key), "ablation": _ablation()}
    if table not in presets:
        raise ReportError(f"table={table}: expected one of {', '.join(presets)}")
    spec = presets[table]
    if columns is None:
        return spec
    return TableSpec(spec.name, spec.rows, tuple(custom_column(c) for c in columns), spec.text)


def custom_column(text: str) -> Column:
    """``columns=`` entry: ``key`` or ``key1|key2`` (first present)."""
    keys = tuple(k.strip() for k in str(text).split("|"))
    if not all(keys):
        raise ReportError(f"columns: {text!r} is not a metric key (expected e.g. "
                          "test/error_cm, or test/error_cm_float_reference|test/error_cm)")
    unit = unit_of(keys[0])
    label = f"{text} (KB)" if unit == "kb" else str(text)
    return Column(label, str(text), keys, unit)


def _pareto(error_key: str, size_key: str) -> TableSpec:
    return TableSpec("pareto", "front", (
        Column("error (cm)", "error_cm", (error_key,), "cm"),
        Column("INT8 size (KB)", "size_int8_bytes", (size_key,), "kb"),
        Column("params", "params", ("model/params",), "count"),
        Column("MACs", "macs", ("model/macs",), "count"),
    ), (TextColumn("model", "model/name"), TextColumn("weight bits", "quant/weight_bits", "float")))


def _ablation() -> TableSpec:
    return TableSpec("ablation", "all", (
        Column("float error (cm)", "float_error_cm",
               ("test/error_cm_float_reference", "test/error_cm"), "cm"),
        Column("QAT INT8 error (cm)", "qat_int8_error_cm", ("test/error_cm",), "cm",
               when=("quant/mode", "qat")),
        Column("IMX500 MCT error (cm)", "imx500_error_cm", ("export/imx500/test/error_cm",),
               "cm"),
        Column("emulated camera error (cm)", "emulated_camera_error_cm",
               ("export/imx500/imx500/emulated_test_error_cm",), "cm"),
        Column("params", "params", ("model/params",), "count"),
        Column("MACs", "macs", ("model/macs",), "count"),
        Column("IMX500 memory (KB)", "imx500_memory_bytes",
               ("export/imx500/imx500/memory_usage_bytes",), "kb"),
    ), (TextColumn("model", "model/name"),))


def cell(stat: Stat | None, unit: str, expected: int) -> str:
    """``mean ± std (n)``; ``(n of N)`` when fewer runs than ``expected`` have it; ``—`` for
    no std (one run) or no value. With one run per configuration (``expected`` 1), the plain
    value, as a single-seed report always printed. Integer properties that every run shares
    (params, bytes) print once, with ``(n of N)`` only when runs lack them."""
    if stat is None:
        return MISSING
    mean = number(stat.mean, unit)
    if expected <= 1:
        return mean
    count = str(stat.n) if stat.n >= expected else f"{stat.n} of {expected}"
    if stat.constant:
        return mean if stat.n >= expected else f"{mean} ({count})"
    std = number(stat.std, unit) if stat.std is not None else MISSING
    return f"{mean} ± {std} ({count})"


def number(value: float, unit: str) -> str:
    if unit == "cm":
        return f"{value:.3f}"
    if unit == "kb":
        return f"{value / KB:.1f}"
    if unit == "count":
        return count(value)
    if unit == "s":
        return f"{value:.1f}"
    return f"{value:.4g}"


def count(value: object) -> str:
    """``129.62k``, ``5.67M``: parameter and MAC counts."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return MISSING
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return str(round(value)) if float(value).is_integer() else f"{value:.2f}"
