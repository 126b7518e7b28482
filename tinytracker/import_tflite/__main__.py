"""Import the authors' TFLite weights: ``python -m tinytracker.import_tflite path=... out=...``.

``path`` is a released ``TinyTracker.tflite`` or ``TinyTrackerS.tflite`` (public repository
``pbonazzi/tinytracker``); ``out`` the checkpoint to write.

* ``activations=int8`` (default): the file's weights in our float net, wrapped to emulate the
  file's int8 activations (:mod:`tinytracker.import_tflite.emulation`), so ``evaluate`` and
  ``predict`` reproduce the released model (within ~1 output step of LiteRT).
* ``activations=float``: the float net alone, to fine-tune (``python -m tinytracker.train``
  with the overrides printed in the summary) or to export; it differs from the released model
  by the int8 rounding of its activations (about 1 cm on average).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from omegaconf import MISSING

from tinytracker.cli import parse_args, refuse_overwrite

PROG = "tinytracker.import_tflite"


@dataclass
class ImportArgs:
    path: str = MISSING  # .tflite file
    out: str = MISSING  # checkpoint to write (.ckpt)
    model: str = "auto"  # auto | tinytracker | tinytracker_s
    activations: str = "int8"  # int8 (emulate the file's int8 activations) | float
    output_scale_cm: float | None = None  # tanh range; null: 30 TinyTracker, 10 TinyTrackerS
    overwrite: bool = False  # replace an existing `out` file


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(ImportArgs, argv, prog=PROG)
    from tinytracker.import_tflite.checkpoint import (
        build_checkpoint,
        fine_tune_overrides,
        save_checkpoint,
    )
    from tinytracker.import_tflite.convert import import_graph
    from tinytracker.import_tflite.reader import TFLiteFormatError, read_tflite

    try:
        refuse_overwrite(args.out, (), args.overwrite, key="out")
        graph = read_tflite(args.path)
        imported = import_graph(graph, args.model, args.output_scale_cm)
        ckpt = build_checkpoint(imported, graph, args.activations)
    except (FileNotFoundError, FileExistsError, ImportError, TFLiteFormatError,
            ValueError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    out = save_checkpoint(ckpt, args.out)
    summary = {
        "checkpoint": str(out),
        **ckpt["tinytracker_import"],
        "net": ckpt["hyper_parameters"]["net"]["_target_"],
        "parameters": sum(p.numel() for p in imported.net.parameters()),
        "input_spec": imported.input_spec,
        "evaluate": f"python -m tinytracker.evaluate ckpt_path={out}",
    }
    if args.activations == "float":
        summary["fine_tune"] = ("python -m tinytracker.train "
                                + " ".join(fine_tune_overrides(imported)) + f" ckpt_path={out}")
    else:
        summary["fine_tune"] = "import with activations=float to fine-tune"
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
