"""``python -m tinytracker.report.imx500_front``: the error-versus-chip-memory front of IMX500
exports at several mixed-precision budgets, read from their ``export.json`` files (the real
exports are made in tests/test_export_imx500.py; here the files are written by hand so each
front and knee is known)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_module


def _export(folder: Path, memory_bytes: int, error_cm: float, budget: int | None = None,
            gptq: bool = False, fmt: str = "imx500") -> None:
    folder.mkdir(parents=True)
    folder.joinpath("export.json").write_text(json.dumps({
        "format": fmt, "checkpoint": "/runs/a/last.ckpt",
        "imx500/memory_usage_bytes": memory_bytes, "imx500/emulated_test_error_cm": error_cm,
        "imx500/weights_memory_budget_bytes": budget, "imx500/gptq": gptq,
        "imx500/mct_weights_memory_8bit_bytes": 418_705,
        "imx500/weights_by_bits": {"8": 100, "4": 20}, "test/error_cm": error_cm - 0.01}))


def test_front_knee_is_the_smallest_export_within_the_tolerance(tmp_path):
    exports = tmp_path / "exports"
    _export(exports / "0", 680_000, 1.170)                   # 8-bit: the reference
    _export(exports / "1", 600_000, 1.180, budget=356_000)   # within 0.05: on the front
    _export(exports / "2", 520_000, 1.210, budget=293_000)   # within 0.05, dominated by 5
    _export(exports / "3", 450_000, 1.400, budget=230_000)   # on the front, too far
    _export(exports / "4", 610_000, 1.300, budget=350_000)   # dominated by 1
    _export(exports / "5", 520_000, 1.190, budget=293_094, gptq=True)  # GPTQ: the knee
    _export(exports / "6", 10, 0.1, fmt="onnx")              # another format: not a point
    proc = run_module("tinytracker.report.imx500_front", f"exports={exports}",
                      f"out_dir={tmp_path / 'front'}")
    front = json.loads((tmp_path / "front" / "front.json").read_text())
    names = [p["name"] for p in front["points"]]
    by_dir = {Path(p["path"]).name: i for i, p in enumerate(front["points"])}
    assert len(names) == 6
    assert front["reference"] == by_dir["0"]  # the largest export without GPTQ
    assert sorted(front["front"]) == sorted(by_dir[d] for d in ("0", "1", "5", "3"))
    assert front["knee"] == by_dir["5"]  # 520,000 B, 1.190 cm: within 0.05 of 1.170
    assert names[by_dir["5"]] == "70% (286 KB) GPTQ" and names[by_dir["0"]] == "8-bit"
    md = (tmp_path / "front" / "front.md").read_text()
    assert "| 70% (286 KB) GPTQ | 520,000 | 76.5% |" in md and "| knee |" in md
    assert (tmp_path / "front" / "front.png").stat().st_size > 10_000
    assert "front.md" in proc.stdout

    # without the GPTQ export, 2 is on the front and the knee
    (exports / "5" / "export.json").unlink()
    run_module("tinytracker.report.imx500_front", f"exports={exports}",
               f"out_dir={tmp_path / 'front2'}", "tolerance_cm=0.05")
    front = json.loads((tmp_path / "front2" / "front.json").read_text())
    assert front["points"][front["knee"]]["size_bytes"] == 520_000
    assert front["points"][front["knee"]]["error_cm"] == pytest.approx(1.21)


def test_front_without_exports_says_how_to_make_them(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = run_module("tinytracker.report.imx500_front", f"exports={tmp_path / 'empty'}",
                      f"out_dir={tmp_path / 'front'}", check=False)
    assert proc.returncode == 1
    assert "no format=imx500 export.json" in proc.stderr
    assert "imx500.weights_memory_fraction=" in proc.stderr
