"""Sony's IMX500 converter (``imxconv-pt``, package ``imx500-converter[pt]``), driven as a CLI.

The converter pins protobuf 4.25.5, onnx 1.17 and onnxruntime 1.21, which break the wandb
of the training environment, so it lives in its own virtual environment (``.venv-imx500/``
at the repository root or in the working directory, created by the README's command) and
is only ever run as a subprocess: nothing here imports it.

It turns MCT's ONNX into ``packerOut.zip`` (the input of ``imx500-package`` on the Raspberry
Pi), ``dnnParams.xml`` (tensor layouts and quantization scales) and
``<model>_MemoryReport.json`` (how much of the chip's 8 MB the network takes).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tinytracker.export.errors import ExportError
from tinytracker.locations import source_checkout

log = logging.getLogger(__name__)

CONVERTER = "imxconv-pt"
CONVERTER_VERSION = "3.19.2"
VENV = ".venv-imx500"
CONVERTER_ENV = "TINYTRACKER_IMX500_CONVERTER"  # path to imxconv-pt, below imx500.converter
INSTALL_COMMAND = (f"python3.11 -m venv {VENV} && {VENV}/bin/pip install "
                   f"'imx500-converter[pt]=={CONVERTER_VERSION}'")
_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


@dataclass(frozen=True)
class ConversionReport:
    """What the converter wrote and its memory report, sizes in bytes."""

    packer_zip: Path
    memory_report: Path
    dnn_params: Path
    fit_in_chip: bool
    memory_usage_bytes: int
    model_memory_bytes: int
    runtime_memory_bytes: int
    chip_memory_bytes: int
    converter_version: str
    conversion_s: float


def converter_dirs() -> list[Path]:
    """Where ``.venv-imx500`` is looked for: the current directory (a wheel's users create it
    where they work), then the source checkout (the README creates it at the repository
    root, and users run from there or from anywhere else)."""
    dirs = [Path.cwd()]
    checkout = source_checkout()
    if checkout is not None and checkout not in dirs:
        dirs.append(checkout)
    return dirs


def find_converter(configured: str | None = None,
                   search_dirs: list[Path] | None = None) -> Path:
    """``imxconv-pt``: ``configured`` (``imx500.converter``), else
    ``$TINYTRACKER_IMX500_CONVERTER``, else ``<dir>/.venv-imx500`` for each of ``search_dirs``
    (default: ``converter_dirs()``), else ``PATH``. A missing converter says how to create
    its environment."""
    how = (f"Create the converter's environment (in the repository root or the directory you "
           f"run from) with\n    {INSTALL_COMMAND}\nor point imx500.converter=<path to "
           f"{CONVERTER}> (or ${CONVERTER_ENV}) at an existing one.")
    for source, value in (("imx500.converter", configured),
                          (CONVERTER_ENV, os.environ.get(CONVERTER_ENV))):
        if value:
            path = Path(value).expanduser()
            if _executable(path):
                return path
            raise ExportError(f"{source}={value}: no executable {CONVERTER} there. " + how)
    dirs = converter_dirs() if search_dirs is None else search_dirs
    candidates = [d / VENV / "bin" / CONVERTER for d in dirs]
    on_path = shutil.which(CONVERTER)
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if _executable(path):
            return path
    looked = ", ".join(str(d / VENV) for d in dirs)
    raise ExportError(f"Sony's IMX500 converter ({CONVERTER}) was not found in {looked} nor "
                      "on PATH. " + how)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def converter_version(converter: Path) -> str:
    out = subprocess.run([str(converter), "--version"], capture_output=True, text=True,
                         timeout=120)
    match = re.search(r"(\d+\.\d+\.\d+)", out.stdout + out.stderr)
    return match.group(1) if match else "unknown"


def run_converter(converter: Path, onnx_path: Path, out_dir: Path,
                  timeout_s: float = 1800) -> ConversionReport:
    """Convert ``onnx_path`` into ``out_dir``; a rejected network raises naming its layers."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(converter), "-i", str(onnx_path), "-o", str(out_dir), "--overwrite-output",
           "--report-size-unit", "B"]
    log.info("converting for the IMX500 (about a minute): %s", " ".join(cmd))
    t0 = time.perf_counter()
    returncode, output = _run_streaming(cmd, timeout_s)
    seconds = time.perf_counter() - t0
    (out_dir / "converter.log").write_text(output)
    report_path = out_dir / f"{onnx_path.stem}_MemoryReport.json"
    if returncode != 0:
        # A network too big for the chip fails conversion but leaves its memory report.
        if report_path.is_file() and not parse_memory_report(report_path)["fit_in_chip"]:
            raise ExportError(too_big_message(parse_memory_report(report_path), report_path))
        raise ExportError(rejection_message(output, onnx_path, returncode)
                          + f" (full log: {out_dir / 'converter.log'})")
    paths = {"packerOut.zip": out_dir / "packerOut.zip", "memory report": report_path,
             "dnnParams.xml": out_dir / "dnnParams.xml"}
    missing = [f"{name} ({p})" for name, p in paths.items() if not p.is_file()]
    if missing:
        raise ExportError(f"{CONVERTER} exited 0 but did not write {', '.join(missing)}; "
                          f"see {out_dir / 'converter.log'}")
    memory = parse_memory_report(report_path)
    return ConversionReport(packer_zip=paths["packerOut.zip"], memory_report=report_path,
                            dnn_params=paths["dnnParams.xml"], conversion_s=seconds,
                            converter_version=converter_version(converter), **memory)


def _run_streaming(cmd: list[str], timeout_s: float) -> tuple[int, str]:
    """Run ``cmd``, passing its log lines on as they come (the converter's progress)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            log.info("%s: %s", CONVERTER, line.rstrip())
        returncode = proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if timed_out.is_set():
        raise ExportError(f"{CONVERTER} did not finish within imx500.timeout_s={timeout_s} s")
    return returncode, "".join(lines)


def parse_memory_report(path: Path) -> dict:
    """The figures of ``<model>_MemoryReport.json`` in bytes, and whether it fits."""
    try:
        report = json.loads(path.read_text())["Memory Report"]
        return {
            "fit_in_chip": bool(report["Fit In Chip"]),
            "memory_usage_bytes": size_bytes(report["Memory Usage"]),
            "model_memory_bytes": size_bytes(report["Model Memory Physical Size"]),
            "runtime_memory_bytes": size_bytes(report["Runtime Memory Physical Size"]),
            "chip_memory_bytes": size_bytes(report["Total Memory Available On Chip"]),
        }
    except (KeyError, ValueError, TypeError) as err:
        raise ExportError(f"{path} is not a memory report this code can read "
                          f"(expected 'Memory Report' with 'Fit In Chip', 'Memory Usage', ...): "
                          f"{err!r}") from err


def too_big_message(memory: dict, report_path: Path) -> str:
    """The memory report's figures, for a network that does not fit the chip."""
    mib = 1024 * 1024
    return (
        "the network does not fit in the IMX500's memory: the converter's memory report says "
        f"{memory['memory_usage_bytes'] / mib:.2f} MB needed (model "
        f"{memory['model_memory_bytes'] / mib:.2f} MB, runtime "
        f"{memory['runtime_memory_bytes'] / mib:.2f} MB) of "
        f"{memory['chip_memory_bytes'] / mib:.2f} MB on the chip. Report kept at {report_path}; "
        "make the model smaller (model.net.width_mult, data.face_size)")


def size_bytes(text: str | int) -> int:
    """``"804.13KB"``, ``"260096B"``, ``"8.00MB"`` (1 KB = 1024 B, as the report uses)."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMG]?B)\s*", str(text))
    if not match:
        raise ValueError(f"not a memory size: {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.,]\d+ (\w+)\s*:\s?(.*)$")
_SOURCE = re.compile(r"\s*\[/[^\]]+:\d+\]\s*$", re.MULTILINE)


def converter_errors(output: str) -> list[str]:
    """The ERROR messages of the converter's log (multi-line messages kept whole)."""
    errors: list[str] = []
    current: list[str] | None = None
    for line in output.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            if current is not None:
                errors.append("\n".join(current))
            current = [match.group(2)] if match.group(1) == "ERROR" else None
        elif current is not None:
            current.append(line)
    if current is not None:
        errors.append("\n".join(current))
    cleaned: list[str] = []
    for error in errors:
        error = error.split("Traceback (most recent call last)")[0]
        error = _SOURCE.sub("", re.sub(r"^CODE: \[\w+\]\s*", "", error)).strip()
        if error and error not in cleaned:
            cleaned.append(error)
    return cleaned


def rejection_message(output: str, onnx_path: Path, returncode: int) -> str:
    """Why the converter refused the network, naming the rejected layers."""
    errors = converter_errors(output)
    nodes = re.findall(r"\[Framework\.onnx\] op: (\w+), id: ([^,\s]+)", output)
    if not nodes:  # the nnir node alone when the ONNX one is not given
        nodes = re.findall(r"Node \[[\w.]+\] op: (\w+), id: ([^,\s]+)", output)
    parts = [f"{CONVERTER} rejected {onnx_path} (exit code {returncode})"]
    if nodes:
        parts.append("rejected layers: " + "; ".join(f"{name} ({op})" for op, name in nodes))
    unsupported = re.search(r"unsupported ops: ([\w, ]+)", output)
    if unsupported:
        ops = [o.strip() for o in unsupported.group(1).split(",") if o.strip()]
        parts.append("unsupported ops: " + "; ".join(
            f"{op} at {', '.join(_onnx_nodes(onnx_path, op)) or '?'}" for op in ops))
    if errors:
        parts.append("converter says: " + " | ".join(" ".join(e.split()) for e in errors))
    return ". ".join(parts)


def _onnx_nodes(onnx_path: Path, op_type: str) -> list[str]:
    """Names of the ``op_type`` nodes of an ONNX file (the converter names only the type)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return [n.name or n.output[0] for n in model.graph.node if n.op_type == op_type][:10]
