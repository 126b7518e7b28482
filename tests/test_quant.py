"""Brevitas quantization: the wrapper on its own, and QAT/PTQ through the real entry point."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from torch import nn

from tests.conftest import REPO, SMALL_DATA, read_metrics
from tinytracker.config import ConfigError
from tinytracker.models import TinyTracker, TinyTrackerS, footprint
from tinytracker.models.checkpoint import module_from_checkpoint
from tinytracker.models.module import GazeModule
from tinytracker.quant import checkpoints
from tinytracker.quant.brevitas import BrevitasNet, calibrate
from tinytracker.quant.checkpoints import CheckpointKindError
from tinytracker.quant.folding import fold_batchnorm
from tinytracker.quant.scheme import QuantScheme
from tinytracker.quant.swap import output_layer
from tinytracker.quant.training import validate_quant_config

# In-process training here: one torch thread, so a second job on 2 cores does not thrash.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FLOAT_KEYS = {
    "test/error_cm", "baseline/mean_predictor_error_cm", "model/params", "model/macs",
    "model/size_fp32_bytes", "model/size_int8_bytes", "model/name", "data/name", "checkpoint",
    "val/error_cm", "train/epochs", "data/train_frames", "data/test_frames",
}
QUANT_KEYS = {"test/error_cm_float_reference", "quant/weight_bits", "quant/act_bits",
              "quant/mode", "quant/per_channel"}


def _trained_float(cls=TinyTracker, **kwargs) -> nn.Module:
    """A float net with non-trivial batch-norm statistics and output scale."""
    torch.manual_seed(0)
    net = cls(**kwargs)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(*_inputs(net, 8))
        last = net.head[-1] if isinstance(net.head, nn.Sequential) else net.head  # late: MLP
        last.weight.mul_(20.0)
    return net.eval()


def _inputs(net: nn.Module, batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.randn(batch, *net.input_shapes[k]).clamp(-1, 1) for k in net.input_keys)


def _calibrated(float_net: nn.Module, **scheme) -> BrevitasNet:
    q = BrevitasNet(float_net, **scheme)
    calibrate(q, [_inputs(float_net, 16) for _ in range(2)], forward=lambda m, b: m(*b))
    return q.eval()


def _quant_layers(q: BrevitasNet) -> dict[str, nn.Module]:
    names = q.kernel_bits
    return {name: m for name, m in q.named_modules() if name in names}


# ----------------------------------------------------------------------------- the wrapper
def test_fold_batchnorm_keeps_the_function():
    net = _trained_float()
    x = _inputs(net, 4)
    folded = fold_batchnorm(copy.deepcopy(net))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    torch.testing.assert_close(folded(*x), net(*x), atol=1e-4, rtol=1e-4)


def test_weights_are_the_folded_float_weights():
    net = _trained_float()
    folded = dict(fold_batchnorm(copy.deepcopy(net)).named_modules())
    q = BrevitasNet(net)
    layers = _quant_layers(q)
    assert len(layers) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in net.modules())
    for name, layer in layers.items():
        float_name = name.removeprefix("net.").replace(".module.", ".")
        torch.testing.assert_close(layer.weight, folded[float_name].weight)
        torch.testing.assert_close(layer.bias, folded[float_name].bias)


def test_quantized_output_is_close_to_float_and_keeps_the_interface():
    net = _trained_float()
    q = _calibrated(net)
    x = _inputs(net, 8)
    assert q.input_keys == net.input_keys == ("face",)
    out, ref = q(*x), net(*x)
    assert out.shape == (8, 2) and out.dtype == torch.float32
    assert not hasattr(out, "scale"), "the output is a plain tensor, not a QuantTensor"
    assert (out - ref).abs().max() < 0.05 * ref.abs().max()
    # the output is on the output quantizer's grid
    step = q.output_step
    assert step is not None and step > 0
    torch.testing.assert_close(out / step, torch.round(out / step), atol=1e-3, rtol=0)


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_bit_widths_are_honoured(bits):
    q = _calibrated(_trained_float(), weight_bits=bits, act_bits=bits)
    for layer in _quant_layers(q).values():
        w = layer.quant_weight()
        assert int(w.bit_width) == bits
        ints = torch.round(w.value / w.scale)
        assert ints.abs().max() <= 2 ** (bits - 1) - 1  # symmetric, narrow range
    # inside the net (input and output have their own widths): activations and layer outputs
    acts = [m.act_quant for m in q.net.modules() if hasattr(m, "act_quant")]
    acts += [m.output_quant for m in _quant_layers(q).values() if m.output_quant.is_quant_enabled]
    assert len(acts) > 20 and all(int(a.bit_width()) == bits for a in acts)


def test_layer_bits_mix_precision_per_group():
    q = BrevitasNet(_trained_float(), weight_bits=8, act_bits=8,
                    layer_bits={"backbone": 6, "head": {"weight": 4}})
    bits = q.kernel_bits
    assert bits["net.input_adapter"] == 8
    assert bits["net.head"] == 4
    backbone = {k: v for k, v in bits.items() if k.startswith("net.backbone.")}
    assert backbone and set(backbone.values()) == {6}
    assert int(_quant_layers(q)["net.backbone.features.0.0"].quant_weight().bit_width) == 6


def test_per_channel_and_per_tensor_scales():
    net = _trained_float()
    per_channel = _quant_layers(BrevitasNet(net, per_channel=True))
    per_tensor = _quant_layers(BrevitasNet(net, per_channel=False))
    conv = per_channel["net.backbone.features.12.0"]
    assert conv.quant_weight().scale.shape == (conv.out_channels, 1, 1, 1)
    fc = per_channel["net.fc.0"]
    assert fc.quant_weight().scale.shape == (fc.out_features, 1)
    assert per_tensor["net.backbone.features.12.0"].quant_weight().scale.numel() == 1


def test_size_follows_the_bit_widths():
    net = _trained_float()
    sizes = {}
    for bits in (8, 4):
        q = BrevitasNet(net, weight_bits=bits)
        sizes[bits] = footprint(q, q.input_shapes, weight_bits=q.kernel_bits).size_int8_bytes
    kernels = sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert sizes[4] < sizes[8]
    # every kernel element is 4 bits smaller (each tensor rounded up to whole bytes)
    assert abs((sizes[8] - sizes[4]) - kernels // 2) <= len(q.kernel_bits)


def test_tinytracker_s_relu6_pool_and_grid_embedding_are_quantized():
    net = _trained_float(TinyTrackerS)
    q = _calibrated(net)
    assert q.input_keys == ("face", "grid_embedding")
    assert set(q.input_quant) == {"face", "grid_embedding"}
    x = _inputs(net, 4)
    assert (q(*x) - net(*x)).abs().max() < 0.1 * net(*x).abs().max() + 0.05


@pytest.mark.parametrize(
    "kwargs, key",
    [({"weight_bits": 1}, "weight_bits"), ({"act_bits": 17}, "act_bits"),
     ({"layer_bits": {"trunk": 4}}, "layer_bits.trunk"),
     ({"layer_bits": {"head": {"weights": 4}}}, "layer_bits.head")],
)
def test_bad_scheme_names_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        BrevitasNet(_trained_float(), **kwargs)


def test_unknown_scheme_key_is_named():
    with pytest.raises(ValueError, match="weight_bit'"):
        BrevitasNet(_trained_float(), weight_bit=4)


def test_checkpoint_reloads_from_its_config(tmp_path):
    net_cfg = {"_target_": checkpoints.QUANTIZED_TARGET,
               "float_net": {"_target_": "tinytracker.models.TinyTracker"},
               "weight_bits": 6, "act_bits": 8, "layer_bits": {"head": 8}}
    module = GazeModule(net=net_cfg, input_spec={"face_size": 112})
    module.net.load_float_weights(_trained_float())
    calibrate(module.net, [_inputs(module.net, 8)], forward=lambda m, b: m(*b))
    path = tmp_path / "q.ckpt"
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)  # plain hyper-parameters, as Lightning writes them
    torch.save(ckpt, path)
    loaded = module_from_checkpoint(path)
    assert isinstance(loaded.net, BrevitasNet)
    assert loaded.net.kernel_bits == module.net.kernel_bits
    x = _inputs(module.net, 4)
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.net(*x), module.net(*x), atol=0, rtol=0)


class _FreshOutput(nn.Module):
    """Its output is a new tensor made after its layer's output was freed, like the late net's
    ``cat(features, face_box)``: CPython then reuses the freed tensor's memory, and its id."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
        return torch.cat((self.fc(x) * 2, box), dim=1)


def test_output_layer_is_the_layer_whose_output_is_returned():
    """Deterministic: without identity matching, fc (freed, id reused by cat) is returned."""
    inputs = (torch.zeros(1, 4), torch.zeros(1, 2))
    assert [output_layer(_FreshOutput(), inputs) for _ in range(10)] == [None] * 10
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2), nn.Dropout()).eval()
    assert output_layer(net, inputs[:1]) is net[2]


def test_late_qat_checkpoint_of_the_training_flow_reloads(tmp_path):
    """``model.position=late`` built, calibrated and fine-tuned as ``quant/training.py`` does:
    its checkpoint reloads strictly and computes the same. The sensor's last layer
    (``channel_reduce``, read by ``fc``) quantizes its own output: the net's output is the
    concatenation with the face box, no layer's output; that used to be decided by ``id()`` of
    freed tensors, so a run could build another net than its checkpoint's config."""
    float_cfg = {"_target_": "tinytracker.models.TinyTracker", "image_size": 64,
                 "position": "late"}
    float_net = _trained_float(image_size=64, position="late")
    scheme = QuantScheme.from_kwargs({})
    module = GazeModule(net=scheme.net_config(float_cfg), input_spec={"face_size": 64})
    module.net.load_float_weights(float_net)
    batches = [{k: x for k, x in zip(float_net.input_keys, _inputs(float_net, 8), strict=True)}
               for _ in range(2)]
    calibrate(module, batches)
    module.train()
    loss = module(batches[0]).square().mean()
    loss.backward()
    with torch.no_grad():
        for p in module.parameters():
            if p.grad is not None:
                p.sub_(1e-3 * p.grad)
    reduce = module.net.net.channel_reduce
    assert reduce.output_quant.is_quant_enabled
    assert module.net.net.fc[0].input_quant is reduce.output_quant  # int32 bias of fc
    path = tmp_path / "late.ckpt"
    ckpt = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(ckpt)
    torch.save(ckpt, path)
    loaded = module_from_checkpoint(path)  # strict: every quantizer scale is in the file
    module.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(batches[1]), module(batches[1]), atol=0, rtol=0)


def test_quantized_target_names_the_wrapper():
    assert checkpoints.QUANTIZED_TARGET == f"{BrevitasNet.__module__}.{BrevitasNet.__name__}"


def test_load_float_weights_names_mismatching_keys():
    q = BrevitasNet({"_target_": "tinytracker.models.TinyTracker"})
    with pytest.raises(ValueError, match="shape mismatch"):
        q.load_float_weights(TinyTracker(width_mult=0.75))


# ----------------------------------------------------------------------------- config
def _compose(*overrides: str, experiment: str | None = "qat"):
    extra = [f"+experiment={experiment}"] if experiment else []
    with initialize_config_module("tinytracker.conf", version_base="1.3"):
        return compose("train", overrides=[*extra, *overrides])


@pytest.mark.parametrize(
    "override, key",
    [("quant.mode=qta", "quant.mode"), ("quant.weight_bits=1", "quant.weight_bits"),
     ("quant.layer_bits={trunk:4}", "quant.layer_bits.trunk"),
     ("quant.calibration_batches=0", "quant.calibration_batches")],
)
def test_bad_quant_config_names_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_quant_config(_compose(override))


def test_qat_experiment_composes_the_default_scheme():
    cfg = _compose()
    scheme = validate_quant_config(cfg).as_dict()
    assert scheme == {"weight_bits": 8, "act_bits": 8, "layer_bits": {}, "input_bits": 8,
                      "output_bits": 8, "per_channel": True, "scaling": "po2"}
    assert scheme == QuantScheme().as_dict()
    net = validate_quant_config(cfg).net_config(cfg.model.net)
    assert net["_target_"] == checkpoints.QUANTIZED_TARGET
    assert net["float_net"]["_target_"] == cfg.model.net._target_


def test_yaml_scheme_keys_are_the_dataclass_fields_with_its_defaults():
    """conf/quant/brevitas.yaml maps onto QuantScheme: same keys, same defaults."""
    from omegaconf import OmegaConf

    yaml = OmegaConf.load(REPO / "tinytracker" / "conf" / "quant" / "brevitas.yaml")
    run_keys = {"mode", "float_ckpt", "float_epochs", "epochs", "calibration_batches",
                "optimizer", "scheduler"}
    assert set(yaml) - run_keys == set(QuantScheme.keys())
    defaults = QuantScheme()
    for key in QuantScheme.keys():
        expected = getattr(defaults, key)
        assert yaml[key] == (None if expected == {} else expected), key


def test_scheme_metrics_flatten_the_layer_groups():
    scheme = QuantScheme(weight_bits=6, layer_bits={"head": {"weight": 4}})
    assert scheme.metrics() == {
        "quant/weight_bits": 6, "quant/act_bits": 8, "quant/input_bits": 8,
        "quant/output_bits": 8, "quant/per_channel": True, "quant/scaling": "po2",
        "quant/layer_bits/head/weight_bits": 4, "quant/layer_bits/head/act_bits": 8}


# ----------------------------------------------------------------------------- entry point


def _train_in_process(out: Path, *overrides: str, experiment: str | None = "qat") -> dict:
    """``train()`` on a config composed as the entry point composes it (same code path)."""
    from tinytracker.train import train

    cfg = _compose(*SMALL_DATA, f"out_dir={out}", f"paths.output_dir={out}",
                   f"paths.root_dir={REPO}", "logger=none", "trainer.fast_dev_run=true",
                   *overrides, experiment=experiment)
    return train(cfg)


@pytest.fixture(scope="module")
def float_ckpt(qat_run) -> Path:
    """A real float checkpoint of the default float config: the float phase of the session's
    QAT run (conftest's ``qat_run``, a short real run of ``+experiment=qat``)."""
    return Path(read_metrics(qat_run)["quant/float_checkpoint"])


def test_fast_dev_run_qat_writes_float_and_quant_metrics(qat_run):
    metrics = read_metrics(qat_run)
    assert FLOAT_KEYS - {"checkpoint", "val/error_cm"} | QUANT_KEYS <= set(metrics)
    assert metrics["model/name"] == "tinytracker"
    assert metrics["quant/mode"] == "qat"
    assert metrics["quant/weight_bits"] == 8 and metrics["quant/act_bits"] == 8
    assert metrics["test/error_cm"] > 0 and metrics["test/error_cm_float_reference"] > 0
    assert metrics["model/size_int8_bytes"] < metrics["model/size_fp32_bytes"] / 3
    ckpt = torch.load(metrics["checkpoint_last"], map_location="cpu", weights_only=True)
    net = ckpt["hyper_parameters"]["net"]
    assert net["_target_"] == checkpoints.QUANTIZED_TARGET
    assert net["float_net"]["_target_"] == "tinytracker.models.TinyTracker"
    assert net["weight_bits"] == 8


def test_ptq_from_a_float_checkpoint_has_the_same_keys(tmp_path, float_ckpt, qat_run):
    metrics = _train_in_process(tmp_path, "quant.mode=ptq", f"quant.float_ckpt={float_ckpt}")
    assert set(read_metrics(tmp_path)) == set(metrics)
    assert set(metrics) == set(read_metrics(qat_run))
    assert metrics["quant/mode"] == "ptq"
    assert metrics["quant/float_checkpoint"] == str(float_ckpt)
    assert metrics["train/epochs"] == 0
    # the calibrated (not fine-tuned) weights are kept as the run's checkpoint
    assert module_from_checkpoint(metrics["checkpoint"]).net.kernel_bits


def test_quantized_checkpoint_as_float_start_is_refused(tmp_path, qat_run):
    qat_ckpt = read_metrics(qat_run)["checkpoint_last"]
    with pytest.raises(CheckpointKindError, match="is a quantized checkpoint") as err:
        _train_in_process(tmp_path, f"quant.float_ckpt={qat_ckpt}")
    assert "quant.float_ckpt" in str(err.value)
    assert not (tmp_path / "checkpoints").exists()


def test_float_checkpoint_as_qat_resume_is_refused(tmp_path, float_ckpt):
    with pytest.raises(CheckpointKindError, match="is a float checkpoint"):
        _train_in_process(tmp_path, f"ckpt_path={float_ckpt}")


def test_quantized_checkpoint_as_float_resume_is_refused(tmp_path, qat_run):
    qat_ckpt = read_metrics(qat_run)["checkpoint_last"]
    with pytest.raises(CheckpointKindError, match="is a quantized checkpoint"):
        _train_in_process(tmp_path, f"ckpt_path={qat_ckpt}", experiment=None)


@pytest.mark.parametrize(
    "override, keys",
    [("model.net.width_mult=0.75", ["model.net.width_mult"]),
     ("data.grey=true", ["model.net.in_channels", "data.grey"])],
)
def test_float_checkpoint_of_another_config_names_the_keys(tmp_path, float_ckpt, override,
                                                           keys):
    with pytest.raises(CheckpointKindError) as err:
        _train_in_process(tmp_path, f"quant.float_ckpt={float_ckpt}", override)
    for key in keys:
        assert key in str(err.value)
