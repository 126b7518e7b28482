"""``python -m tinytracker.report.imx500_front exports=<dir> out_dir=<dir>``: the front of gaze
error against the IMX500's *real* memory, over exports of one checkpoint at several
mixed-precision budgets.

The exports are a Hydra multirun of the export, one job per budget (``<dir>/<n>/export.json``)::

    python -m tinytracker.export -m ckpt_path=<ckpt> format=imx500 \\
        imx500.weights_memory_fraction=1.0,0.85,0.7,0.55,0.4 out_dir=<dir>

Every ``export.json`` under ``exports=`` with ``format: imx500`` is a point: its emulated camera
error (``error_metric``, default ``imx500/emulated_test_error_cm``) against the converter's
memory report (``size_metric``, default ``imx500/memory_usage_bytes``: what the network takes
of the chip's 8 MB, not an INT8 estimate). ``out_dir`` gets ``front.json`` (every point, the
front, the knee), ``front.md`` (the table) and ``front.png``. The *knee* is the smallest-memory
point of the front whose error is within ``tolerance_cm`` of the reference: the largest
export without GPTQ (the 8-bit one when the budgets include 1.0).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import MISSING  # noqa: E402

from tinytracker.atomic import write_json, write_text  # noqa: E402
from tinytracker.cli import errors_exit, parse_args  # noqa: E402
from tinytracker.report.pareto import pareto_front  # noqa: E402

PROG = "tinytracker.report.imx500_front"
KB = 1024


class FrontError(ValueError):
    """No usable exports: the message says what was found."""


@dataclass
class FrontConfig:
    """``python -m tinytracker.report.imx500_front`` arguments."""

    exports: str = MISSING        # folder searched for export.json (a multirun's out_dir)
    out_dir: str = MISSING
    error_metric: str = "imx500/emulated_test_error_cm"
    size_metric: str = "imx500/memory_usage_bytes"
    tolerance_cm: float = 0.05    # the knee: error within this of the reference's
    title: str = "IMX500: emulated camera error vs chip memory (mixed precision)"


@dataclass(frozen=True)
class FrontPoint:
    """One export: its budget, what the converter reported, its errors."""

    name: str
    path: str
    size_bytes: int
    error_cm: float
    gptq: bool
    budget_bytes: int | None
    numbers: dict[str, Any] = field(default_factory=dict)


def load_points(folder: Path, cfg: FrontConfig, notes: list[str]) -> list[FrontPoint]:
    points = []
    for path in sorted(folder.rglob("export.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            notes.append(f"{path}: unreadable ({err}); left out")
            continue
        if data.get("format") != "imx500":
            continue
        size, error = data.get(cfg.size_metric), data.get(cfg.error_metric)
        if not isinstance(size, (int, float)) or not isinstance(error, (int, float)):
            notes.append(f"{path}: no numeric {cfg.size_metric} and {cfg.error_metric}; left out")
            continue
        budget = data.get("imx500/weights_memory_budget_bytes")
        gptq = bool(data.get("imx500/gptq", False))
        name = _name(budget, data.get("imx500/mct_weights_memory_8bit_bytes"), gptq)
        points.append(FrontPoint(name, str(path.parent), int(size), float(error), gptq, budget,
                                 _numbers(data)))
    checkpoints = {json.loads(Path(p.path, "export.json").read_text()).get("checkpoint")
                   for p in points}
    if len(checkpoints) > 1:
        notes.append(f"the exports come from {len(checkpoints)} checkpoints: {sorted(checkpoints)}")
    return points


def _name(budget: int | None, eight_bit: int | None, gptq: bool) -> str:
    """``8-bit``, or the budget as a share of the 8-bit weights memory and in KB; `` GPTQ``."""
    if budget is None:
        name = "8-bit"
    elif eight_bit:
        name = f"{budget / eight_bit:.0%} ({budget / KB:.0f} KB)"
    else:
        name = f"{budget / KB:.0f} KB"
    return name + (" GPTQ" if gptq else "")


def _numbers(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("imx500/model_memory_bytes", "imx500/mct_weights_memory_bytes",
            "imx500/mct_weights_memory_8bit_bytes", "imx500/weights_by_bits",
            "test/error_cm", "test/error_cm_float_weights", "imx500/mct_s", "checkpoint")
    return {k: data[k] for k in keys if k in data}


def knee(points: list[FrontPoint], front: list[int], tolerance_cm: float) -> tuple[int, int]:
    """(reference, knee) indices: the reference is the largest export without GPTQ; the knee
    the smallest-memory front point within ``tolerance_cm`` of its error."""
    plain = [i for i, p in enumerate(points) if not p.gptq] or list(range(len(points)))
    ref = max(plain, key=lambda i: (points[i].size_bytes, -points[i].error_cm))
    within = [i for i in front if points[i].error_cm <= points[ref].error_cm + tolerance_cm]
    return ref, min(within or [ref], key=lambda i: points[i].size_bytes)


def build_front(cfg: FrontConfig) -> dict[str, Path]:
    notes: list[str] = []
    folder = Path(cfg.exports)
    if not folder.is_dir():
        raise FrontError(f"exports={cfg.exports} is not a folder")
    points = load_points(folder, cfg, notes)
    for note in notes:
        print(f"{PROG}: {note}", file=sys.stderr)
    if not points:
        raise FrontError(f"exports={cfg.exports}: no format=imx500 export.json with "
                         f"{cfg.size_metric} and {cfg.error_metric} below it; make them with "
                         "python -m tinytracker.export -m format=imx500 "
                         "imx500.weights_memory_fraction=1.0,0.7,... out_dir=<dir>")
    front = pareto_front([(p.size_bytes, p.error_cm) for p in points])
    ref, best = knee(points, front, cfg.tolerance_cm)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "front.json", "md": out / "front.md", "png": out / "front.png"}
    write_json(paths["json"], {
        "error_metric": cfg.error_metric, "size_metric": cfg.size_metric,
        "tolerance_cm": cfg.tolerance_cm, "points": [asdict(p) for p in points],
        "front": front, "reference": ref, "knee": best, "notes": notes})
    write_text(paths["md"], markdown(points, front, ref, best, cfg))
    plot(points, front, ref, best, cfg, paths["png"])
    return paths


def markdown(points: list[FrontPoint], front: list[int], ref: int, best: int,
             cfg: FrontConfig) -> str:
    base = points[ref]
    lines = [f"# {cfg.title}", "",
             f"Error: `{cfg.error_metric}`; memory: `{cfg.size_metric}` (the converter's memory "
             f"report). Knee: the smallest front point within {cfg.tolerance_cm} cm of "
             f"{base.name} ({base.error_cm:.3f} cm).", "",
             "| budget | chip memory (B) | vs reference | MCT weights (B) | weights at 8/4/2 bits "
             "| MCT model (cm) | emulated camera (cm) | vs reference (cm) | front | export |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i in sorted(range(len(points)), key=lambda i: -points[i].size_bytes):
        p = points[i]
        by_bits = p.numbers.get("imx500/weights_by_bits", {})
        bits = " / ".join(f"{by_bits.get(str(b), 0):,}" for b in (8, 4, 2))
        mark = "knee" if i == best else ("yes" if i in front else "")
        mct = p.numbers.get("imx500/mct_weights_memory_bytes")
        test = p.numbers.get("test/error_cm")
        lines.append(
            f"| {p.name} | {p.size_bytes:,} | {p.size_bytes / base.size_bytes:.1%} "
            f"| {'—' if mct is None else f'{mct:,}'} | {bits} "
            f"| {'—' if test is None else f'{test:.3f}'} | {p.error_cm:.3f} "
            f"| {p.error_cm - base.error_cm:+.3f} | {mark} | `{p.path}` |")
    return "\n".join(lines) + "\n"


def plot(points: list[FrontPoint], front: list[int], ref: int, best: int, cfg: FrontConfig,
         path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=150)
    xs = [p.size_bytes / KB for p in points]
    ys = [p.error_cm for p in points]
    ax.scatter(xs, ys, s=24, color="tab:blue", alpha=0.6, label="exports")
    ax.plot([xs[i] for i in front], [ys[i] for i in front], drawstyle="steps-post",
            color="tab:red", lw=1.2)
    ax.scatter([xs[i] for i in front], [ys[i] for i in front], s=40, color="tab:red",
               edgecolor="black", lw=0.5, zorder=3, label="Pareto front")
    ax.scatter([xs[best]], [ys[best]], s=160, facecolor="none", edgecolor="black", lw=1.5,
               zorder=4, label=f"knee: within {cfg.tolerance_cm} cm of {points[ref].name}")
    ax.axhline(ys[ref] + cfg.tolerance_cm, color="tab:gray", ls=":", lw=1)
    for p, x, y in zip(points, xs, ys, strict=True):
        ax.annotate(p.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.set_xlabel("IMX500 memory usage, converter's report (KB, 1 KB = 1024 B)")
    ax.set_ylabel("emulated camera test error (cm)" if "emulated" in cfg.error_metric
                  else cfg.error_metric)
    ax.set_title(cfg.title, fontsize=9)
    ax.grid(True, alpha=0.25)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(FrontConfig, argv, prog=PROG)
    with errors_exit(PROG, FrontError):
        paths = build_front(cfg)
    print(paths["md"].read_text())
    for kind, path in paths.items():
        print(f"{kind}: {path}")


if __name__ == "__main__":
    main()
