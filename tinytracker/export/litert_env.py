"""The LiteRT environment, ``.venv-litert``: Google's ``litert-torch`` converter and the TFLite
Micro interpreter (``tflite-micro``), driven as a command.

``litert-torch`` pins ``typing-extensions<4.13`` (through ``xdsl``, which its MLIR converter
needs) and brings JAX, transformers and torchao; the training environment keeps a newer
``typing-extensions`` and none of the rest. So, as Sony's converter (:mod:`imxconv`), it lives
in a virtual environment of its own, created by the README's install command, and is only ever
run as a subprocess: its Python runs :mod:`tinytracker.export.litert_worker` by path, and the
two sides exchange files. Its torch is the CPU build 2.13.0 that this machine keeps on disk
(2.2 GB and under a minute to install, against 5.5 GB for 2.14.1's CUDA build): ``torch.export``
programs written by the training environment's 2.14.1 load there (tests/test_export_tflite.py
converts real ones).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tinytracker.export.errors import ExportError
from tinytracker.export.imxconv import converter_dirs

log = logging.getLogger(__name__)

VENV = ".venv-litert"
PYTHON_ENV = "TINYTRACKER_LITERT_PYTHON"  # path to that environment's python, below tflite.python
LITERT_TORCH_VERSION = "0.10.0"
TFLITE_MICRO_VERSION = "0.dev20261023182759"
TORCH_VERSION = "2.13.0"
INSTALL_COMMAND = (f"python3.11 -m venv {VENV} && {VENV}/bin/pip install "
                   f"'torch=={TORCH_VERSION}' 'litert-torch=={LITERT_TORCH_VERSION}' "
                   f"'tflite-micro=={TFLITE_MICRO_VERSION}'")
WORKER = Path(__file__).resolve().with_name("litert_worker.py")


def find_litert_python(configured: str | None = None,
                       search_dirs: list[Path] | None = None) -> Path:
    """The Python of the LiteRT environment: ``configured`` (``tflite.python``), else
    ``$TINYTRACKER_LITERT_PYTHON``, else ``<dir>/.venv-litert/bin/python`` for each of
    ``search_dirs`` (default: the current directory, then the source checkout). One that
    lacks ``litert-torch`` or ``tflite-micro`` counts as missing; the error says how to create
    the environment."""
    how = (f"Create the LiteRT environment (in the repository root or the directory you run "
           f"from) with\n    {INSTALL_COMMAND}\nor point tflite.python=<its python> (or "
           f"${PYTHON_ENV}) at an existing one.")
    for source, value in (("tflite.python", configured), (PYTHON_ENV, os.environ.get(PYTHON_ENV))):
        if value:
            path = Path(value).expanduser()
            problem = _unusable(path)
            if problem:
                raise ExportError(f"{source}={value}: {problem}. " + how)
            return path
    dirs = converter_dirs() if search_dirs is None else search_dirs
    problems = []
    for d in dirs:
        path = d / VENV / "bin" / "python"
        problem = _unusable(path)
        if problem is None:
            return path
        problems.append(f"{d / VENV}: {problem}")
    raise ExportError("Google's LiteRT converter (litert-torch) and TFLite Micro were not found: "
                      + "; ".join(problems) + ". " + how)


def _unusable(python: Path) -> str | None:
    """Why ``python`` cannot run the worker, or ``None``."""
    if not (python.is_file() and os.access(python, os.X_OK)):
        return "no executable python there"
    # find_spec: checks the packages are installed without importing them (seconds each)
    probe = ("import importlib.util as u, sys; "
             "missing = [m for m in ('litert_torch', 'tflite_micro', 'torchao') "
             "if u.find_spec(m) is None]; print(' '.join(missing)); sys.exit(bool(missing))")
    try:
        proc = subprocess.run([str(python), "-I", "-c", probe], capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"its python does not run ({err})"
    if proc.returncode != 0:
        missing = proc.stdout.strip() or proc.stderr.strip()[-300:]
        return f"it lacks {missing}"
    return None


def run_worker(python: Path, command: str, timeout_s: float, **files: Path) -> dict[str, Any]:
    """``litert_worker.py <command> --<name> <path>...`` in the LiteRT environment; its JSON
    report. A failed step raises :class:`ExportError` with the worker's message."""
    with tempfile.TemporaryDirectory(prefix="tinytracker-litert-") as tmp:
        report_path = Path(tmp) / "report.json"
        # -I: neither PYTHONPATH nor the script's folder (tinytracker/export, whose onnx.py
        # would shadow the onnx package) on that environment's sys.path
        cmd = [str(python), "-I", str(WORKER), command, "--report", str(report_path)]
        for name, path in files.items():
            cmd += [f"--{name}", str(path)]
        log.info("LiteRT environment: %s", " ".join(cmd))
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as err:
            raise ExportError(f"the LiteRT step '{command}' did not finish within "
                              f"tflite.timeout_s={timeout_s} s") from err
        seconds = time.perf_counter() - t0
        report = json.loads(report_path.read_text()) if report_path.is_file() else None
    if report is None or proc.returncode not in (0, 2):
        raise ExportError(f"the LiteRT step '{command}' failed (exit code {proc.returncode}) "
                          f"without a report: {(proc.stderr or proc.stdout)[-3000:]}")
    if "error" in report:
        if "traceback" in report:
            log.info("LiteRT step '%s' failed:\n%s", command, report["traceback"])
        raise ExportError(report["error"])
    log.info("LiteRT step '%s' done in %.1f s", command, seconds)
    return report
