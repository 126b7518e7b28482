"""Write an imported model as a tinytracker checkpoint (Lightning layout, plain data only).

The file loads with ``torch.load(weights_only=True)`` and
:func:`tinytracker.models.checkpoint.module_from_checkpoint`, so ``evaluate``, ``export`` and
``predict`` take it like a trained one. ``optimizer_states`` and ``lr_schedulers`` are empty
lists: Lightning resumes from it (``python -m tinytracker.train ckpt_path=...``) with the
weights and a fresh optimizer and scheduler from the run's config, at epoch 0.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import lightning
import torch

from tinytracker.import_tflite.convert import ImportedModel
from tinytracker.import_tflite.emulation import Int8Activations, int8_points
from tinytracker.import_tflite.reader import Graph
from tinytracker.models import registry
from tinytracker.models.module import GazeModule

ACTIVATIONS = ("float", "int8")
EMULATION_TARGET = f"{Int8Activations.__module__}.{Int8Activations.__qualname__}"


def build_checkpoint(imported: ImportedModel, graph: Graph,
                     activations: str = "int8") -> dict[str, Any]:
    """The checkpoint dict; ``activations="int8"`` wraps the net in :class:`Int8Activations`."""
    if activations not in ACTIVATIONS:
        raise ValueError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    net_cfg: dict[str, Any] = imported.net_config
    net = imported.net
    if activations == "int8":
        points = int8_points(graph, imported.net, imported.layer_names)
        net_cfg = {"_target_": EMULATION_TARGET, "float_net": imported.net_config, **points}
        net = Int8Activations(imported.net, **points)
    module = GazeModule(net=net_cfg, input_spec=imported.input_spec)
    module.net.load_state_dict(net.state_dict(), strict=True)
    return {
        "epoch": 0,
        "global_step": 0,
        "pytorch-lightning_version": lightning.__version__,
        "state_dict": module.state_dict(),
        "hyper_parameters": json.loads(json.dumps(dict(module.hparams))),
        "optimizer_states": [],
        "lr_schedulers": [],
        "tinytracker_import": provenance(imported, graph, activations),
    }


def provenance(imported: ImportedModel, graph: Graph, activations: str) -> dict[str, Any]:
    """Where the weights came from and the numbers needed to compare with the file."""
    try:
        reader = f"ai-edge-litert {version('ai-edge-litert')}"
    except PackageNotFoundError:
        reader = "ai-edge-litert"
    return {
        "source": str(graph.path),
        "source_sha256": hashlib.sha256(graph.path.read_bytes()).hexdigest(),
        "reader": reader,
        "model": imported.name,
        "activations": activations,
        "input_scale": imported.input_scale,
        "input_zero_point": imported.input_zero_point,
        "output_step_cm": imported.output_step_cm,
        "pre_tanh_step_cm": imported.pre_tanh_step_cm,
    }


def save_checkpoint(ckpt: dict[str, Any], out: str | Path) -> Path:
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(out)
    return out


def fine_tune_overrides(imported: ImportedModel) -> list[str]:
    """``python -m tinytracker.train`` overrides that rebuild this net and its preprocessing."""
    cfg, spec = imported.net_config, imported.input_spec
    out = [f"+experiment={registry.card(imported.name).experiment}",
           f"data.face_size={spec['face_size']}",
           f"data.grey={str(spec['grey']).lower()}",
           f"data.grid_embedding={str(spec['grid_embedding']).lower()}",
           f"data.mean={spec['mean']!r}", f"data.std={spec['std']!r}",
           f"data.grid_convention={spec['grid_convention']}",
           f"data.interpolation={spec['interpolation']}"]
    for key in ("output_activation", "output_scale_cm", "padding", "baked_grid_embedding"):
        if key in cfg:
            value = str(cfg[key]).lower() if isinstance(cfg[key], bool) else cfg[key]
            out.append(f"++model.net.{key}={value}")
    return out
