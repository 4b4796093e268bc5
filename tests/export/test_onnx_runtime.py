"""ONNX Runtime evaluation: the file gives PyTorch's logits, ``--evaluate --onnx-model`` PyTorch's result line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from distiller.apps.loops import evaluate
from distiller.errors import ConfigError, ExportError
from distiller.export import OnnxRuntimeModel, export_img_classifier_to_onnx, quantize_static_onnx
from distiller.export.onnx_runtime import optimized_op_types
from distiller.models import create_model

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

DIGITS = ("-a", "simplenet_digits", "--dataset", "digits", "-b", "64", "-j", "0", "--deterministic")


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", "cifar10")
    with torch.no_grad():  # non-trivial BatchNorm statistics: folded into the convolutions by the exporter
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(resnet20, tmp_path_factory):
    """resnet20 exported twice: with the app's default softmax output, and without (logits)."""
    folder = tmp_path_factory.mktemp("onnx")
    softmax = export_img_classifier_to_onnx(resnet20, folder / "softmax.onnx")
    logits = export_img_classifier_to_onnx(resnet20, folder / "logits.onnx", add_softmax=False)
    return softmax, logits


def test_logits_match_pytorch_with_and_without_a_softmax_in_the_file(resnet20, exported):
    x = torch.randn(7, 3, 32, 32)  # not the tracing batch size: the batch is dynamic
    with torch.no_grad():
        expected = resnet20(x)
    for path, had_softmax in zip(exported, (True, False), strict=True):
        model = OnnxRuntimeModel(path, threads=1)
        assert model.softmax_removed is had_softmax
        assert model.input_shape[1:] == [3, 32, 32]
        output = model(x)
        assert output.dtype == torch.float32 and output.shape == (7, 10)
        torch.testing.assert_close(output, expected, atol=1e-4, rtol=1e-4)
    probabilities = OnnxRuntimeModel(exported[0], strip_softmax=False, optimization="basic")(x)
    assert not OnnxRuntimeModel(exported[0], strip_softmax=False).softmax_removed
    torch.testing.assert_close(probabilities, torch.softmax(expected, dim=-1), atol=1e-5, rtol=1e-4)


def test_the_apps_evaluation_loop_runs_it_unchanged(resnet20, exported):
    data = torch.utils.data.TensorDataset(torch.randn(20, 3, 32, 32), torch.randint(0, 10, (20,)))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    criterion = nn.CrossEntropyLoss()
    reference = evaluate(resnet20, loader, criterion, progress=False)
    result = evaluate(OnnxRuntimeModel(exported[0]), loader, criterion, progress=False)
    assert result.top1 == reference.top1 and result.top5 == reference.top5
    assert result.loss == pytest.approx(reference.loss, abs=1e-5)


def test_input_shape_mismatch_names_the_file_and_the_expected_input(exported):
    model = OnnxRuntimeModel(exported[1])
    with pytest.raises(ExportError, match=r"logits\.onnx expects input 'input' \[batch, 3, 32, 32\].*\[2, 1, 28, 28\]"):
        model(torch.randn(2, 1, 28, 28))
    with pytest.raises(ExportError, match=r"\[batch, 3, 32, 32\]"):
        model(torch.randn(3, 32, 32))  # no batch dimension


def test_missing_unreadable_and_bad_settings(tmp_path, exported):
    with pytest.raises(ExportError, match=r"no_such\.onnx does not exist"):
        OnnxRuntimeModel(tmp_path / "no_such.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00 this is not a protobuf" * 50)
    for strip in (True, False):
        with pytest.raises(ExportError, match="garbage.onnx"):
            OnnxRuntimeModel(garbage, strip_softmax=strip)
    with pytest.raises(ConfigError, match="optimization level 'fast'"):
        OnnxRuntimeModel(exported[1], optimization="fast")
    with pytest.raises(ConfigError, match="threads"):
        OnnxRuntimeModel(exported[1], threads=0)


def test_missing_onnxruntime_says_what_to_install(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime then raises ImportError
    with pytest.raises(ExportError, match=r"pip install onnxruntime"):
        OnnxRuntimeModel(exported[1])


def test_ort_static_quantizer_runs_int8_kernels_close_to_fp32(resnet20, exported, tmp_path):
    calibration = [torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    path = quantize_static_onnx(exported[1], tmp_path / "int8" / "resnet20.onnx", calibration)
    ops = optimized_op_types(path)
    assert ops["QLinearConv"] == 21 and ops["Conv"] == 0  # every convolution runs as int8
    x = torch.randn(16, 3, 32, 32)
    with torch.no_grad():
        expected = resnet20(x)
    output = OnnxRuntimeModel(path)(x)
    assert float((output - expected).abs().max() / expected.abs().max()) < 0.1
    with pytest.raises(ExportError, match="at least one calibration batch"):
        quantize_static_onnx(exported[1], tmp_path / "none.onnx", [])
    with pytest.raises(ConfigError, match="weight_type"):
        quantize_static_onnx(exported[1], tmp_path / "bad.onnx", calibration, weight_type="QInt4")


def test_cli_onnx_evaluation_prints_the_pytorch_result_line(run_cli, tmp_path):
    train = run_cli("classify", *DIGITS, "--epochs", "2", out_dir=tmp_path / "train")
    assert train.code == 0, train.err
    checkpoint = train.log_dir() / "checkpoint.pth.tar"
    pytorch = run_cli(
        "classify", *DIGITS, "--evaluate", "--resume-from", checkpoint, "--export-onnx", out_dir=tmp_path / "pytorch"
    )
    assert pytorch.code == 0, pytorch.err
    onnx_file = pytorch.saved("simplenet_digits.onnx")  # with the app's softmax output
    before = sorted(onnx_file.parent.iterdir())
    run = run_cli("classify", *DIGITS, "--evaluate", "--onnx-model", onnx_file, "--confusion", out_dir=tmp_path / "ort")
    assert run.code == 0, run.err
    assert run.out.splitlines()[-1].startswith("==> Top1: ")
    top1, top5, loss = run.result()
    expected = pytorch.result()
    assert top1 > 50.0  # a trained model: a wrong input pipeline would not reach this
    assert top1 == pytest.approx(expected[0], abs=0.01) and top5 == pytest.approx(expected[1], abs=0.01)
    assert loss == pytest.approx(expected[2], abs=0.0015)  # logits, not probabilities, reach the loss
    assert "true \\ predicted" in run.out
    assert sorted(onnx_file.parent.iterdir()) == before  # nothing written next to the input


def _user_error(run, *fragments):
    assert run.code == 2, (run.out, run.err)
    assert run.err.startswith("distiller: error: ") and "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in run.err, run.err


def test_cli_onnx_model_needs_evaluate_and_combines_with_no_other_mode(run_cli, exported, tmp_path):
    onnx_file = exported[1]
    _user_error(run_cli("classify", "-a", "resnet20_cifar", "--onnx-model", onnx_file), "needs --evaluate")
    run = run_cli(
        "classify", "-a", "resnet20_cifar", "-e", "--onnx-model", onnx_file, "--summary", "compute", "--export-onnx"
    )
    _user_error(run, "does not combine with --summary, --export-onnx")
    ckpt = tmp_path / "x.pth.tar"
    run = run_cli(
        "classify", "-a", "resnet20_cifar", "-e", "--onnx-model", onnx_file, "--thinnify", "--resume-from", ckpt
    )
    _user_error(run, "--thinnify", "--resume-from")
    assert not ckpt.exists()
    run = run_cli("classify", "-a", "resnet20_cifar", "-e", "--onnx-model", onnx_file, "--quantize-eval")
    _user_error(run, "does not combine with --quantize-eval")


def test_cli_missing_file_and_input_mismatch_are_one_line_errors(run_cli, exported, tmp_path):
    missing = tmp_path / "missing.onnx"
    _user_error(run_cli("classify", *DIGITS, "-e", "--onnx-model", missing), str(missing))
    # a CIFAR-shaped file evaluated on 8x8 digits
    _user_error(run_cli("classify", *DIGITS, "-e", "--onnx-model", exported[1]), str(exported[1]), "[batch, 3, 32, 32]")


def test_numpy_path_takes_other_float_types(exported):
    model = OnnxRuntimeModel(exported[1])
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32))  # float64 in, converted
    assert model.run_numpy(x).shape == (2, 10)
    assert "softmax_removed=False" in repr(model)
