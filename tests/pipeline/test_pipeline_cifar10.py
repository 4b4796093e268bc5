"""`distiller pipeline --dataset cifar10` (resnet20_cifar) on a tiny subset of the shared CIFAR-10 copy.

Checks the wiring of the CIFAR-10 variant (data folder, coupled filter groups of a residual network,
thinning, int8 export), not its accuracy: a few hundred images for a few epochs train nothing.
"""

from __future__ import annotations

import json

import pytest

from shared_data import CIFAR10_DIR, require

pytestmark = pytest.mark.realdata


def test_cifar10_pipeline_thins_and_exports_resnet20(run_cli, tmp_path):
    data = require(CIFAR10_DIR)
    run = run_cli(
        "pipeline", "--dataset", "cifar10", "--data-dir", data, "--epochs", "1", "--prune-epochs", "6",
        "--finetune-epochs", "1", "--quantization", "ptq", "--train-size", "256", "--valid-size", "100",
        "--test-size", "100", "--calibration-size", "64", "-b", "8", "--threads", "1", "--latency-rounds", "1",
        "--latency-repeats", "1", "-o", tmp_path,
    )  # fmt: skip
    assert run.code == 0, run.out + run.err
    assert run.out.splitlines()[0].startswith("Log dir: ")
    report = json.loads(run.saved("pipeline.json").read_text())
    assert report["config"]["arch"] == "resnet20_cifar" and report["test_images"] == 100
    dense, thinned, int8 = report["rows"]
    assert dense["params"] == 272_474 and dense["macs"] == 40_813_184
    assert thinned["params"] < dense["params"] and thinned["macs"] < dense["macs"]
    assert report["thinning"]["groups"] == 11  # nine blocks and two residual streams lose channels
    assert int8["onnx_bytes"] < 0.5 * thinned["onnx_bytes"]
    assert int8["top1"]["ort_int8"] == pytest.approx(int8["top1"]["torch_int8_sim"], abs=3.0)
