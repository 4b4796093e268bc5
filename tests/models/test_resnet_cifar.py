"""ResNet-CIFAR: the original's names, checkpoints and layer-gate semantics."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.optim.sgd as sgd_module
from PIL import Image

from distiller.models import create_model
from distiller.models.weights import canonical_key


def _load(path: Path) -> dict:
    # The unit-test fixture pickles the SGD class under 'optimizer_type'; allow just that one global.
    with torch.serialization.safe_globals([sgd_module.SGD]):
        return torch.load(path, map_location="cpu", weights_only=True)


def _stripped_keys(path: Path) -> set[str]:
    return {k.removeprefix("module.") for k in _load(path)["state_dict"]}


def test_parameter_names_match_original_checkpoint(checkpoints_dir: Path) -> None:
    model = create_model("resnet20_cifar")
    ours = set(model.state_dict())
    theirs = _stripped_keys(checkpoints_dir / "checkpoint_trained_dense.pth.tar")
    # That checkpoint predates BatchNorm's num_batches_tracked buffer (PyTorch 0.4.1); all else is equal.
    assert {k for k in ours if not k.endswith("num_batches_tracked")} == theirs


def test_state_dict_keys_match_original_test_fixture_exactly(checkpoints_dir: Path) -> None:
    # The original's test fixture was saved by a newer PyTorch and has every key, buffers included.
    model = create_model("resnet20_cifar")
    assert set(model.state_dict()) == _stripped_keys(checkpoints_dir / "resnet20_cifar10_checkpoint.pth.tar")


def test_named_modules_follow_original(checkpoints_dir: Path) -> None:
    names = dict(create_model("resnet20_cifar").named_modules())
    for name in (
        "relu",
        "avgpool",
        "layer1.0.relu1",
        "layer1.0.relu2",
        "layer1.0.residual_eltwiseadd",
        "layer2.0.downsample.0",
        "layer2.0.downsample.1",
    ):
        assert name in names, name
    assert type(names["layer3.2.residual_eltwiseadd"]).__name__ == "EltwiseAdd"


def _cifar_test_batch(cifar10_dir: Path, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    with open(cifar10_dir / "test_order.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    images = np.stack([np.asarray(Image.open(cifar10_dir / r["path"]).convert("RGB")) for r in rows])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    x = (x - 0.5) / 0.5  # the original's CIFAR-10 normalization
    return x, torch.tensor([int(r["label"]) for r in rows])


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.realdata
def test_dense_checkpoint_accuracy(checkpoints_dir: Path, cifar10_dir: Path) -> None:
    """The trained checkpoint scores 91.71% on the test set with the original's forward pass."""
    model = create_model("resnet20_cifar", weights_path=checkpoints_dir / "checkpoint_trained_dense.pth.tar")
    x, y = _cifar_test_batch(cifar10_dir, 500)
    assert _accuracy(model, x, y) > 0.86


@pytest.mark.realdata
def test_layer_removed_checkpoint_needs_gates(checkpoints_dir: Path, cifar10_dir: Path) -> None:
    """A checkpoint fine-tuned with 5 bypassed convolutions only works with those gates off (91% vs 12%)."""
    path = checkpoints_dir / "checkpoint_trained_4D_regularized_5Lremoved_finetuned.pth.tar"
    model = create_model("resnet20_cifar", weights_path=path)
    x, y = _cifar_test_batch(cifar10_dir, 500)
    assert _accuracy(model, x, y) < 0.3
    removed = ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.2.conv2"]
    weights = {canonical_key(k): v for k, v in _load(path)["state_dict"].items()}
    for name in removed:
        assert not weights[name + ".weight"].any()
        layer, block, conv = name.split(".")
        model.layer_gates[int(layer[-1]) - 1][int(block)][int(conv[-1]) - 1] = False
    assert _accuracy(model, x, y) > 0.86


def test_gates_are_shared_with_blocks() -> None:
    model = create_model("resnet20_cifar")
    assert [len(layer) for layer in model.layer_gates] == [3, 3, 3]
    for i, layer in enumerate((model.layer1, model.layer2, model.layer3)):
        for j, block in enumerate(layer):
            assert block.block_gates is model.layer_gates[i][j]


def test_block_with_all_gates_off_returns_relu_of_double_input() -> None:
    model = create_model("resnet20_cifar").eval()
    model.layer_gates[0][1][:] = [False, False]
    x = torch.randn(2, 16, 32, 32)
    before = x.clone()
    out = model.layer1[1](x)
    assert torch.equal(out, torch.relu(before + before))
    assert torch.equal(x, before)  # the input is not modified in place


@pytest.mark.parametrize("gates", [[False, True], [True, False]])
def test_single_gate_off_skips_one_conv(gates: list[bool]) -> None:
    model = create_model("resnet20_cifar").eval()
    block = model.layer1[0]
    block.block_gates[:] = gates
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        out = block(x)
        if gates[0]:
            expected = torch.relu(x + block.relu1(block.bn1(block.conv1(x))))
        else:
            expected = torch.relu(x + block.bn2(block.conv2(x)))
    torch.testing.assert_close(out, expected)
