"""ONNX export: the file runs in ONNX Runtime with PyTorch's outputs; the caller's model is untouched."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import nn

from distiller.errors import ExportError
from distiller.export import SoftmaxOutput, export_img_classifier_to_onnx, unwrap_parallel
from distiller.models import create_model

onnx = pytest.importorskip("onnx")


def _run_onnx(path, x: torch.Tensor) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    return session.run(["output"], {"input": x.numpy()})[0]


@pytest.fixture(scope="module")
def resnet20() -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", "cifar10")
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them is checked too
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.train()


def test_resnet20_runs_in_onnxruntime_like_pytorch(resnet20, tmp_path):
    path = export_img_classifier_to_onnx(resnet20, tmp_path / "resnet20.onnx")
    assert path == tmp_path / "resnet20.onnx"
    onnx.checker.check_model(onnx.load(str(path)))
    x = torch.randn(5, 3, 32, 32)  # another batch size than the tracing input: the batch is dynamic
    with torch.no_grad():
        expected = torch.softmax(resnet20.eval()(x), dim=-1).numpy()
    resnet20.train()
    np.testing.assert_allclose(_run_onnx(path, x), expected, atol=1e-4)


def test_without_softmax_outputs_logits(tmp_path):
    model = create_model("simplenet_cifar", "cifar10").eval()
    path = export_img_classifier_to_onnx(model, tmp_path / "m.onnx", add_softmax=False, opset=13)
    assert onnx.load(str(path)).opset_import[0].version == 13
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(_run_onnx(path, x), model(x).numpy(), atol=1e-4)


def test_the_callers_model_is_untouched(resnet20, tmp_path):
    before = {k: v.clone() for k, v in resnet20.state_dict().items()}
    modes = [m.training for m in resnet20.modules()]
    forward = resnet20.forward
    export_img_classifier_to_onnx(
        nn.DataParallel(resnet20), tmp_path / "m.onnx", example_input=torch.randn(2, 3, 32, 32)
    )
    assert [m.training for m in resnet20.modules()] == modes
    assert resnet20.forward == forward and not isinstance(resnet20, SoftmaxOutput)
    after = resnet20.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unwrap_parallel():
    inner = nn.Linear(2, 2)
    assert unwrap_parallel(nn.DataParallel(inner)) is inner and unwrap_parallel(inner) is inner


def test_dataset_gives_the_input_shape(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))  # no input_shape attribute
    path = export_img_classifier_to_onnx(model, tmp_path / "mnist.onnx", dataset="mnist")
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1, 28, 28]


def test_unwritable_path_keeps_existing_files(tmp_path):
    model = create_model("simplenet_cifar", "cifar10")
    blocker = tmp_path / "a_file"
    blocker.write_text("keep")
    with pytest.raises(ExportError, match="is a file, not a folder"):
        export_img_classifier_to_onnx(model, blocker / "m.onnx")
    assert blocker.read_text() == "keep"


def test_unexportable_model_is_a_clear_error_and_leaves_no_file(tmp_path, capfd):
    class Svd(nn.Module):
        input_shape = (4,)

        def forward(self, x):
            return torch.linalg.svd(x.reshape(2, 2))[0].reshape(1, 4)

    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="linalg_svd"):
        export_img_classifier_to_onnx(Svd(), target)
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]
    assert capfd.readouterr().out == ""  # the exporter's native graph dump does not reach stdout


def test_missing_onnx_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # importlib.util.find_spec("onnx") is then None
    with pytest.raises(ExportError, match=r"pip install 'onnx'"):
        export_img_classifier_to_onnx(create_model("simplenet_cifar", "cifar10"), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []
