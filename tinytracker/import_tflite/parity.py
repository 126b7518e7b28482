"""Run the authors' TFLite file with LiteRT next to the imported model, on the same inputs.

Both see the same int8 input: our float inputs (the authors' training preprocessing,
``p / 127.5 - 1`` and the grid embedding) are quantized with the file's input scale and zero
point, LiteRT gets those int8 values, the PyTorch model their dequantized values.

The comparison unit is one *output step*: the scale of the int8 tensor that the file's float
output is dequantized from (the TANH output, 1/128), times the tanh range in cm
(30 cm TinyTracker: 0.234 cm; 10 cm TinyTrackerS: 0.078 cm). The int8 model cannot resolve
finer differences of its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tinytracker.import_tflite.convert import ImportedModel
from tinytracker.import_tflite.reader import INSTALL_HINT


@dataclass
class Parity:
    tflite_cm: np.ndarray  # (N, 2) the file run by LiteRT, in cm
    torch_cm: np.ndarray  # (N, 2) the imported PyTorch model, in cm
    step_cm: float

    @property
    def diff_cm(self) -> np.ndarray:
        return np.abs(self.tflite_cm - self.torch_cm)

    def summary(self) -> dict[str, float]:
        d = self.diff_cm
        return {"samples": int(len(d)), "max_abs_diff_cm": float(d.max()),
                "mean_abs_diff_cm": float(d.mean()), "max_abs_diff_steps": float(d.max()
                                                                                 / self.step_cm),
                "mean_abs_diff_steps": float(d.mean() / self.step_cm),
                "output_step_cm": self.step_cm}


def litert_interpreter(path: str | Path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    return interpreter


def quantize_input(x_nhwc: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return np.clip(np.round(x_nhwc / scale) + zero_point, -128, 127).astype(np.int8)


@torch.no_grad()
def compare(imported: ImportedModel, tflite_path: str | Path, face: np.ndarray,
            grid_embedding: np.ndarray | None = None) -> Parity:
    """``face (N, C, S, S)`` normalised as ``imported.input_spec``; ``grid_embedding
    (N, 2, S, S)`` where the model takes one (not for a baked grid)."""
    net, cfg = imported.net.eval(), imported.net_config
    takes_grid = "grid_embedding" in net.input_keys
    if takes_grid != (grid_embedding is not None):
        raise ValueError(f"the model's inputs are {net.input_keys}: pass grid_embedding "
                         "exactly when it takes one")
    stacked = face if grid_embedding is None else np.concatenate([face, grid_embedding], 1)
    q = quantize_input(stacked.transpose(0, 2, 3, 1), imported.input_scale,
                       imported.input_zero_point)
    interpreter = litert_interpreter(tflite_path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    range_cm = cfg["output_scale_cm"] if cfg["output_activation"] == "tanh" else 1.0
    tflite = []
    for sample in q:
        interpreter.set_tensor(inp["index"], sample[None])
        interpreter.invoke()
        tflite.append(interpreter.get_tensor(out["index"])[0] * range_cm)
    deq = (q.astype(np.float32) - imported.input_zero_point) * np.float32(imported.input_scale)
    x = torch.from_numpy(np.ascontiguousarray(deq.transpose(0, 3, 1, 2)))
    c = face.shape[1]
    ours = net(x[:, :c], x[:, c:]) if takes_grid else net(x)
    return Parity(np.asarray(tflite, dtype=np.float64), ours.double().numpy(),
                  imported.output_step_cm)
