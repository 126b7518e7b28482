"""The benchmark command runs every section on tiny settings and writes the keys it promises.

Its figures are measured, not asserted: speed targets are read from a real run of
``python -m tinytracker.benchmark`` (README "Performance"), never from timed unit tests.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ANCHORS, SMALL_DATA, run_module

KEYS = (
    "train/lightning_over_plain",
    "latency/onnx_int8/threads1/p50_ms",
    "latency/onnx_int8/threads2/p50_ms",
    "latency/torch_fp32/threads1/p50_ms",
    "data/jpeg/samples_per_s_per_core",
    "e2e/default_run_s",
    "e2e/train_s",
    "machine/cores",
)


@pytest.mark.slow
def test_benchmark_writes_every_figure(tmp_path, cache_dir):
    out = tmp_path / "bench.json"
    small = ",".join(SMALL_DATA)
    proc = run_module(
        "tinytracker.benchmark", f"out={out}", "repeats=1", "train_batches=3",
        "warmup_batches=1", "latency_warmup=1", "latency_runs=5", "data_samples=8",
        f"overrides=[{small}]", f"e2e_overrides=[{small},trainer.max_epochs=1,logger=csv]",
        f"work_dir={tmp_path / 'work'}",
    )
    results = json.loads(out.read_text())
    for key in KEYS:
        assert key in results, key
        assert isinstance(results[key], (int, float)) and results[key] > 0, (key, results[key])
    assert results["version/torch"].startswith("2.14.1")
    if (ANCHORS / "TinyTracker.tflite").is_file():
        assert results["latency/tflite/threads1/p50_ms"] > 0
        assert results["target_met/latency/onnx_int8/threads1/p50_ms"] in (True, False)
        assert results["latency/input"] == "128x128x5, batch 1"  # built at the file's input
    else:
        assert "not found" in results["latency/tflite/skipped"]
    if (ANCHORS / "TinyTrackerS.tflite").is_file():
        for key in ("onnx_int8", "torch_fp32", "tflite"):
            assert results[f"latency/tinytracker_s/{key}/threads2/p50_ms"] > 0, key
        assert results["latency/tinytracker_s/input"] == "96x96x1, batch 1"
    else:
        assert "not found" in results["latency/tinytracker_s/tflite/skipped"]
    _check_tflite_ours(results)
    assert results["e2e/error_over_mean_predictor"] == pytest.approx(
        results["e2e/test_error_cm"] / results["e2e/mean_predictor_error_cm"])
    assert results["target_met/e2e/error_over_mean_predictor"] is (
        results["e2e/error_over_mean_predictor"] <= 0.45)
    assert "lightning_over_plain" in proc.stdout  # the printed table


def test_benchmark_never_overwrites_results(tmp_path):
    from tinytracker.benchmark.__main__ import main

    out = tmp_path / "bench.json"
    out.write_text("{}")
    with pytest.raises(SystemExit, match="exists") as err:  # the command's main, in-process
        main([f"out={out}"])
    assert err.value.code != 0
    assert out.read_text() == "{}"


def _check_tflite_ours(results: dict) -> None:
    """Our .tflite beside the authors' in LiteRT, or the reason it was not measured."""
    from tinytracker.export.errors import ExportError
    from tinytracker.export.litert_env import find_litert_python

    try:
        find_litert_python()
    except ExportError:
        assert "not found" in results["latency/tflite_ours/skipped"]
        return
    for root in ("latency", "latency/tinytracker_s"):
        for t in (1, 2):
            assert results[f"{root}/tflite_ours/threads{t}/p50_ms"] > 0, (root, t)
            assert results[f"{root}/tflite_ours/threads{t}/p90_ms"] >= \
                results[f"{root}/tflite_ours/threads{t}/p50_ms"]
            if f"{root}/tflite/threads{t}/p50_ms" in results:  # the authors' file was there
                assert results[f"{root}/tflite_ours_over_authors/threads{t}"] == pytest.approx(
                    results[f"{root}/tflite_ours/threads{t}/p50_ms"]
                    / results[f"{root}/tflite/threads{t}/p50_ms"])
                assert results[f"target_met/{root}/tflite_ours/threads{t}/p50_ms"] in (True,
                                                                                      False)

