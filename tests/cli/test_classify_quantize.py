"""``distiller classify`` post-training quantization: calibration, --quantize-eval, checkpoints, int8 ONNX.

The fast tests use the digits dataset that ships with the package; the real-data tests use the
original's dense ResNet-20 checkpoint on a CIFAR-10 test subset (the full 10,000-image figures are
measured by ``benchmarks/ptq_accuracy.py``).
"""

from __future__ import annotations

import pytest

from distiller.quantization import load_quant_stats
from shared_data import CHECKPOINTS, CIFAR10_DIR, ORIGINAL_SAMPLES, require

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-j", "0", "-b", "64")


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """A simplenet_digits trained for two epochs (accuracy well above chance)."""
    from distiller.cli.main import main

    out = tmp_path_factory.mktemp("train")
    assert main(["classify", *DIGITS, "--epochs", "2", "--lr", "0.1", "--deterministic", "-o", str(out)]) == 0
    return next(out.glob("*/checkpoint.pth.tar"))


def test_calibration_alone_saves_statistics_of_the_training_split(run_cli):
    run = run_cli("classify", *DIGITS, "--qe-calibration", "200")
    assert run.code == 0, run.err
    stats = load_quant_stats(run.saved("acts_quantization_stats.yaml"))
    assert {"conv1", "relu1", "pool", "fc"} <= set(stats)
    assert stats["conv1"]["inputs"][0]["total_numel"] == 200 * 64
    assert "Top1" not in run.out


def test_quantize_eval_saves_a_checkpoint_that_reloads_to_the_same_result(run_cli, digits_checkpoint):
    quant = ("--qe-calibration", "300", "--qe-per-channel", "--qe-clip-acts", "avg", "--qe-no-clip-layers", "fc")
    run = run_cli("classify", *DIGITS, "--resume-from", digits_checkpoint, "--evaluate", "--quantize-eval", *quant)
    assert run.code == 0, run.err
    top1, _, _ = run.result()
    fp = run_cli("classify", *DIGITS, "--resume-from", digits_checkpoint, "--evaluate")
    fp_top1, _, _ = fp.result()
    assert top1 >= fp_top1 - 2.0, (top1, fp_top1)
    ckpt = run.saved("quantized_checkpoint.pth.tar")
    reloaded = run_cli("classify", *DIGITS, "--resume-from", ckpt, "--evaluate")
    assert reloaded.code == 0, reloaded.err
    assert reloaded.result() == run.result()
    log_dir = run.log_dir()
    assert (log_dir / "layer_quant_params.yaml").is_file()
    assert (log_dir / "quant_stats_after_prepare_model.yaml").is_file()


def test_int8_onnx_export_evaluates_like_the_simulation(run_cli, digits_checkpoint):
    run = run_cli(
        "classify", *DIGITS, "--resume-from", digits_checkpoint, "--evaluate", "--quantize-eval",
        "--qe-calibration", "300", "--qe-mode", "asym_u", "--export-onnx",
    )
    assert run.code == 0, run.err
    onnx_file = run.saved("simplenet_digits.onnx")
    ort = run_cli("classify", *DIGITS, "--evaluate", "--onnx-model", onnx_file)
    assert ort.code == 0, ort.err
    assert ort.result()[:2] == run.result()[:2]


def test_dynamic_quantization_runs_and_cannot_be_exported(run_cli, digits_checkpoint):
    run = run_cli(
        "classify", *DIGITS, "--resume-from", digits_checkpoint, "--evaluate", "--quantize-eval", "--qe-dynamic",
        "--export-onnx",
    )
    assert run.code != 0
    assert "dynamic" in run.err and "--qe-calibration" in run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--quantize-eval",), "needs --evaluate"),
        (("--evaluate", "--quantize-eval", "--qe-lapq", "--qe-dynamic"), "--qe-lapq needs static"),
        (("--qe-calibration", "100", "--evaluate"), "only collects statistics"),
        (("--qe-convert-pytorch",), "needs --evaluate --quantize-eval"),
    ],
)
def test_bad_flag_combinations_fail_clearly(run_cli, flags, message):
    run = run_cli("classify", *DIGITS, *flags)
    assert run.code != 0
    assert message in run.err
    assert "Traceback" not in run.err


def test_stats_and_calibration_sources_are_exclusive(run_cli, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli("classify", *DIGITS, "--evaluate", "--quantize-eval", "--qe-dynamic", "--qe-calibration", "10")
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_original_ptq_config_and_stats_quantize_resnet18(run_cli):
    config = require(ORIGINAL_SAMPLES / "resnet18_imagenet_post_train.yaml")
    run = run_cli(
        "classify", "-a", "resnet18", "--dataset", "fake", "--evaluate", "--quantize-eval",
        "--qe-config-file", config, "--etes", "8", "-b", "4", "-j", "0",
    )
    assert run.code == 0, run.err
    assert "Test: 8 samples" in run.out
    params = (run.log_dir() / "layer_quant_params.yaml").read_text()
    assert "layer1.0.add" in params and "w_scale" in params


@pytest.mark.realdata
def test_resnet20_symmetric_per_channel_keeps_accuracy_and_deploys_identically(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_dense.pth.tar")
    data = require(CIFAR10_DIR)
    common = ("-a", "resnet20_cifar", "--resume-from", ckpt, "--evaluate", "--etes", "1000", "-j", "0", "-b", "250")
    fp = run_cli("classify", data, *common)
    run = run_cli(
        "classify", data, *common, "--quantize-eval", "--qe-calibration", "1000", "--qe-per-channel",
        "--qe-clip-acts", "avg", "--qe-no-clip-layers", "fc", "--export-onnx",
    )
    assert run.code == 0, run.err
    top1, fp_top1 = run.result()[0], fp.result()[0]
    assert top1 >= fp_top1 - 0.6, (top1, fp_top1)
    assert top1 >= 90.0
    ort = run_cli("classify", data, "-a", "resnet20_cifar", "--evaluate", "--etes", "1000", "-j", "0", "-b", "250",
                  "--onnx-model", run.saved("resnet20_cifar.onnx"))
    assert ort.code == 0, ort.err
    assert abs(ort.result()[0] - top1) <= 0.1


@pytest.mark.realdata
def test_resnet20_dynamic_full_flow_3(run_cli):
    ckpt = require(CHECKPOINTS / "checkpoint_trained_dense.pth.tar")
    data = require(CIFAR10_DIR)
    run = run_cli(
        "classify", data, "-a", "resnet20_cifar", "--resume-from", ckpt, "--evaluate", "--quantize-eval",
        "--qe-dynamic", "--qe-clip-acts", "avg", "--qe-no-clip-layers", "fc", "--etes", "1000", "-j", "0",
        "-b", "250",
    )
    assert run.code == 0, run.err
    assert run.result()[0] >= 89.5
