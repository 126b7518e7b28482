"""Evaluate a checkpoint: ``python -m tinytracker.evaluate ckpt_path=... [data=...]``.

Writes into its run directory ``metrics.json`` (overall error, error per device and per
device type where the data says which device recorded each frame), ``predictions.csv``, and
``error_by_screen_position.png``: where on the screen the model is worst. Runs through a
Lightning ``Trainer`` (``trainer=...``, as in training): on a GPU with ``trainer=gpu``, over
several processes with ``trainer=ddp trainer.devices=N``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from tinytracker.assemble import checkpoint_data
from tinytracker.config import check_launch, register_resolvers
from tinytracker.data.processed import check_split
from tinytracker.models.checkpoint import module_from_checkpoint
from tinytracker.models.module import GazeModule
from tinytracker.tracking import write_metrics

log = logging.getLogger(__name__)
register_resolvers()


def device_type(device_name: str) -> str:
    """GazeCapture device names: iPads are tablets, iPhones and iPods phones."""
    return "tablet" if "ipad" in device_name.lower() else "phone"


def predict_split(module: GazeModule, loader,
                  trainer: L.Trainer | None = None) -> dict[str, np.ndarray]:
    """Predictions, targets and ids for every sample of a loader, in the loader's order.

    Runs ``trainer.predict`` (default: one CPU process), so ``trainer=ddp`` spreads the frames
    over processes (each frame on one rank, Lightning's unrepeated sampler); every rank then
    holds all predictions.
    """
    if trainer is None:
        trainer = L.Trainer(accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_model_summary=False)
    batches = trainer.predict(module, dataloaders=loader, return_predictions=True) or []
    keys = {"pred": "pred_cm", "target": "gaze_cm", "rec": "rec_num", "frame": "frame_index"}
    local = {k: np.concatenate([b[v].float().numpy() if k in ("pred", "target") else
                                b[v].numpy() for b in batches]) for k, v in keys.items()}
    if trainer.world_size > 1:
        parts: list = [None] * trainer.world_size
        torch.distributed.all_gather_object(parts, local)
        local = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    return _in_dataset_order(local, loader.dataset.index)


def _in_dataset_order(pred: dict[str, np.ndarray], index) -> dict[str, np.ndarray]:
    """Reorder gathered predictions to the split's row order; every frame exactly once."""
    row_of = {(int(r), int(f)): i for i, (r, f) in
              enumerate(zip(index.rec_num, index.frame_index, strict=True))}
    rows = np.array([row_of.get((int(r), int(f)), -1) for r, f in
                     zip(pred["rec"], pred["frame"], strict=True)], dtype=np.int64)
    if len(rows) != len(row_of) or (rows < 0).any() or len(np.unique(rows)) != len(rows):
        raise RuntimeError(f"evaluation saw {len(rows)} predictions ({len(np.unique(rows))} "
                           f"distinct frames) for a split of {len(row_of)} frames")
    order = np.argsort(rows)
    return {k: v[order] for k, v in pred.items()}


def error_breakdown(pred: dict[str, np.ndarray], devices: dict[int, str],
                    prefix: str) -> dict[str, float]:
    err = np.linalg.norm(pred["pred"] - pred["target"], axis=1)
    metrics: dict[str, float] = {f"{prefix}/error_cm": float(err.mean()),
                                 f"{prefix}/frames": int(len(err))}
    if devices:
        names = np.array([devices.get(int(r), "unknown") for r in pred["rec"]])
        kinds = np.array([device_type(n) for n in names])
        for group, labels in (("device", names), ("device_type", kinds)):
            for value in np.unique(labels):
                key = f"{prefix}/error_cm/{group}/{value.replace(' ', '_')}"
                metrics[key] = float(err[labels == value].mean())
    return metrics


def plot_error_by_position(pred: dict[str, np.ndarray], path: Path, cell_cm: float) -> Path:
    """Mean error per screen cell (camera coordinates, cm) as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target, err = pred["target"], np.linalg.norm(pred["pred"] - pred["target"], axis=1)
    x_edges = np.arange(np.floor(target[:, 0].min()), target[:, 0].max() + cell_cm, cell_cm)
    y_edges = np.arange(np.floor(target[:, 1].min()), target[:, 1].max() + cell_cm, cell_cm)
    if len(x_edges) < 2 or len(y_edges) < 2:
        x_edges, y_edges = 2, 2
    total, xe, ye = np.histogram2d(target[:, 0], target[:, 1], bins=[x_edges, y_edges],
                                   weights=err)
    count, _, _ = np.histogram2d(target[:, 0], target[:, 1], bins=[xe, ye])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    fig, ax = plt.subplots(figsize=(5, 7))
    mesh = ax.pcolormesh(xe, ye, mean.T, cmap="magma_r", shading="flat")
    fig.colorbar(mesh, ax=ax, label="mean error (cm)")
    ax.plot([0], [0], marker="*", color="tab:blue", markersize=14, label="camera")
    ax.set_xlabel("XCam (cm)")
    ax.set_ylabel("YCam (cm)")
    ax.set_aspect("equal")
    ax.set_title(f"Error by target position (overall {err.mean():.2f} cm)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_predictions(pred: dict[str, np.ndarray], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rec_num", "frame_index", "x_cm", "y_cm", "target_x_cm", "target_y_cm"])
        for r, f, p, t in zip(pred["rec"], pred["frame"], pred["pred"], pred["target"],
                              strict=True):
            w.writerow([int(r), int(f), f"{p[0]:.4f}", f"{p[1]:.4f}", f"{t[0]:.4f}",
                        f"{t[1]:.4f}"])


def evaluate(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    module = module_from_checkpoint(cfg.ckpt_path)
    datamodule, loader = checkpoint_data(cfg.data, module, cfg.split)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False,
                                     enable_model_summary=False)
    check_launch(trainer)
    pred = predict_split(module, loader, trainer)
    metrics: dict[str, Any] = error_breakdown(pred, datamodule.index.devices_by_rec(),
                                              cfg.split)
    metrics["baseline/mean_predictor_error_cm"] = datamodule.mean_predictor_error_cm(cfg.split)
    metrics["checkpoint"] = str(cfg.ckpt_path)
    metrics["data/name"] = cfg.data.name
    metrics["evaluate/processes"] = trainer.world_size
    if trainer.is_global_zero:
        write_predictions(pred, out_dir / "predictions.csv")
        plot_error_by_position(pred, out_dir / "error_by_screen_position.png",
                               cfg.heatmap_cell_cm)
        write_metrics(out_dir / "metrics.json", metrics)
        for key in sorted(metrics):
            log.info("%s: %s", key, metrics[key])
    return metrics


@hydra.main(version_base="1.3", config_path="pkg://tinytracker.conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    check_split(cfg.split, SystemExit)
    evaluate(cfg, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    main()
