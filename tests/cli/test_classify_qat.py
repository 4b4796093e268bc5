"""`distiller classify --compress` with quantization-aware training: resume across the QAT start, KD."""

from __future__ import annotations

import pytest
import torch

from shared_data import CIFAR10_DIR, REPO_ROOT, require

SCHEDULE = REPO_ROOT / "tests" / "data_files" / "digits_pact_from_epoch1.yaml"
DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "--lr", "0.1", "-j", "0", "--deterministic")


def _checkpoint(run):
    return torch.load(run.log_dir() / "checkpoint.pth.tar", weights_only=True)


def test_resume_after_the_qat_start_is_bit_equal(run_cli, tmp_path):
    full = run_cli("classify", *DIGITS, "--epochs", "4", "--compress", SCHEDULE, out_dir=tmp_path / "full")
    part = run_cli("classify", *DIGITS, "--epochs", "3", "--compress", SCHEDULE, out_dir=tmp_path / "part")
    assert full.code == 0 and part.code == 0, (full.err, part.err)
    assert "relu1.clip_val" in _checkpoint(part)["state_dict"]  # QAT started at epoch 1
    resumed = run_cli(
        "classify", *DIGITS, "--epochs", "4", "--resume-from", part.log_dir() / "checkpoint.pth.tar",
        out_dir=tmp_path / "resumed",
    )
    assert resumed.code == 0, resumed.err
    expected, actual = _checkpoint(full), _checkpoint(resumed)
    assert expected["state_dict"].keys() == actual["state_dict"].keys()
    for key, value in expected["state_dict"].items():
        assert torch.equal(value, actual["state_dict"][key]), key
    assert resumed.result() == full.result()


def test_qat_with_knowledge_distillation_runs(run_cli, tmp_path):
    teacher = run_cli("classify", *DIGITS, "--epochs", "2", out_dir=tmp_path / "teacher")
    assert teacher.code == 0, teacher.err
    run = run_cli(
        "classify", *DIGITS, "--epochs", "2", "--compress", SCHEDULE, "--kd-teacher", "simplenet_digits",
        "--kd-resume", teacher.log_dir() / "checkpoint.pth.tar", "--kd-temp", "4", "--kd-dw", "0.7",
        "--kd-sw", "0.3", out_dir=tmp_path / "kd",
    )
    assert run.code == 0, run.err
    assert "relu1.clip_val" in _checkpoint(run)["state_dict"]
    assert run.result()[0] > 50.0


@pytest.mark.slow
@pytest.mark.realdata
def test_preact_resnet20_pact_after_a_short_float_pretraining(run_cli, tmp_path):
    """The issue's recipe check: one float epoch on CIFAR-10, then one PACT a4/w3 epoch (example schedule)."""
    data = require(CIFAR10_DIR)
    common = ("-a", "preact_resnet20_cifar", "-b", "128", "--lr", "0.1", "--wd", "0.0002", "-j", "0", "--deterministic")
    float_run = run_cli("classify", data, *common, "--epochs", "1", out_dir=tmp_path / "float")
    assert float_run.code == 0, float_run.err
    pact = run_cli(
        "classify", data, *common, "--epochs", "1", "--reset-optimizer",
        "--resume-from", float_run.log_dir() / "checkpoint.pth.tar",
        "--compress", REPO_ROOT / "examples" / "quantization" / "preact_resnet20_cifar_pact.yaml",
        out_dir=tmp_path / "pact",
    )
    assert pact.code == 0, pact.err
    state = _checkpoint(pact)["state_dict"]
    assert any(key.endswith("clip_val") for key in state)
    assert pact.result()[0] > 20.0  # well above chance after two short epochs (measured: see the closing note)


def test_export_of_a_qat_checkpoint_is_int8_and_matches_the_simulation(run_cli, tmp_path):
    train = run_cli("classify", *DIGITS, "--epochs", "3", "--compress", SCHEDULE, out_dir=tmp_path / "qat")
    assert train.code == 0, train.err
    ckpt = train.log_dir() / "checkpoint.pth.tar"
    export = run_cli("classify", *DIGITS, "--resume-from", ckpt, "--export-onnx", out_dir=tmp_path / "export")
    assert export.code == 0, export.err
    assert "converted to its int8 form" in (export.log_dir() / f"{export.log_dir().name}.log").read_text()
    onnx_file = export.saved("simplenet_digits.onnx")
    import onnx

    graph = onnx.load(str(onnx_file)).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    simulated = run_cli("classify", *DIGITS, "--resume-from", ckpt, "--evaluate", out_dir=tmp_path / "sim")
    ort = run_cli("classify", *DIGITS, "--evaluate", "--onnx-model", onnx_file, out_dir=tmp_path / "ort")
    assert simulated.code == 0 and ort.code == 0, (simulated.err, ort.err)
    assert abs(ort.result()[0] - simulated.result()[0]) <= 1.0
