"""The import contracts of ``pyproject.toml`` hold: layers, no circles, no import of an entry point,
models/data below quant/export, and an ONNX reader free of Brevitas and MCT."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What issue 16 asks the contracts to keep; removing one of them fails here, not silently.
REQUIRED = {
    "layers": "layers",
    "no-circles": "acyclic_siblings",
    "entry-points": "forbidden",
    "float-below-quant": "forbidden",
    "onnx-reader": "forbidden",
}


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    return {c["id"]: c for c in config["contracts"]}


def test_the_required_contracts_are_declared():
    contracts = _contracts()
    assert {k: contracts.get(k, {}).get("type") for k in REQUIRED} == REQUIRED
    entry = contracts["entry-points"]
    assert {"tinytracker.train", "tinytracker.evaluate",
            "tinytracker.**.__main__"} <= set(entry["forbidden_modules"])
    assert {"brevitas", "model_compression_toolkit"} <= set(
        contracts["onnx-reader"]["forbidden_modules"])
    assert "tinytracker.onnx_runner" in contracts["onnx-reader"]["source_modules"]


def test_lint_imports_keeps_every_contract():
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.is_file(), f"{lint} is missing: pip install -e '.[test]' (import-linter)"
    proc = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Contracts: {len(_contracts())} kept, 0 broken" in proc.stdout
