"""bf16 mixed precision and channels_last for every model (the CPU run of the GPU code path)."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_module

from tests.conftest import SMALL_DATA, read_metrics, train_in_process
from tinytracker.assemble import build_module
from tinytracker.data.dataset import SampleSpec, input_shapes
from tinytracker.models.module import GazeModule

EXPERIMENTS = {"tinytracker": "tinytracker", "tinytracker_s": "tinytracker_s",
               "itracker": "baseline"}


def _module(experiment: str, *overrides: str) -> tuple[GazeModule, dict]:
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"+experiment={experiment}", *overrides])
    module = build_module(cfg)
    spec = SampleSpec(face_size=cfg.data.face_size, eye_size=cfg.data.eye_size,
                      grey=cfg.data.grey)
    shapes = input_shapes(spec)
    torch.manual_seed(0)
    batch = {k: torch.randn(2, *shapes[k]) for k in module.input_keys}
    return module, batch


@pytest.mark.parametrize("model", sorted(EXPERIMENTS))
def test_channels_last_changes_the_layout_not_the_values(model, one_torch_thread):
    plain, batch = _module(EXPERIMENTS[model])
    nhwc, _ = _module(EXPERIMENTS[model], "model.channels_last=true")
    nhwc.load_state_dict(plain.state_dict())
    convs = [m.weight for m in nhwc.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    plain.eval()
    nhwc.eval()
    with torch.no_grad():
        expected = plain(batch)
        torch.testing.assert_close(nhwc(batch), expected, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # what bf16-mixed runs
            low = nhwc(batch)
    assert low.dtype == torch.bfloat16
    assert torch.isfinite(low).all()
    assert (low.float() - expected).abs().max() < 0.05 * expected.abs().max() + 0.05


# bf16 convolutions are emulated on most CPUs, so their cost grows with the batch: batches of
# 2 run every step in bf16 at a fraction of the time.
BF16_DATA = [*[a for a in SMALL_DATA if "batch_size" not in a], "data.batch_size=2",
             "data.eval_batch_size=2"]


@pytest.mark.parametrize("model", [
    "tinytracker", "tinytracker_s",
    pytest.param("itracker", marks=pytest.mark.slow),  # bf16 224 px convs on a CPU
])
def test_bf16_mixed_channels_last_fast_dev_run(tmp_path, cache_dir, model):
    # in-process: the command's own train() on the config it composes
    train_in_process(tmp_path, f"+experiment={EXPERIMENTS[model]}", *BF16_DATA,
                     "trainer.precision=bf16-mixed", "model.channels_last=true",
                     "trainer.fast_dev_run=true", "logger=csv")
    metrics = read_metrics(tmp_path)
    assert metrics["model/name"] == model
    assert math.isfinite(metrics["test/error_cm"]) and metrics["test/error_cm"] > 0
