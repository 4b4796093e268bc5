"""Every Distiller architecture: builds, runs, has the original's names, matches torchvision where it should."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from torch import nn

from distiller.models import MODELS, create_model

# Architectures whose classifier pools with a fixed 7x7 window or expects 6x6 maps: 224x224 only.
NEEDS_224 = {
    "alexnet_bn",
    "mobilenet",
    "mobilenet_025",
    "mobilenet_050",
    "mobilenet_075",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet152",
    "resnet50_earlyexit",  # the exits' Linear layers expect 224x224 inputs
}
SLOW = {
    "resnet1202_cifar",
    "resnet1202_cifar_earlyexit",
    "resnet101",
    "resnet152",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "preact_resnet101",
    "preact_resnet152",
}
DISTILLER_ARCHS = [name for name, entry in MODELS.items() if entry.source == "distiller"]


def _input_shape(arch: str) -> tuple[int, int, int]:
    entry = MODELS.get(arch)
    if entry.dataset == "imagenet" and arch not in NEEDS_224:
        return (3, 64, 64)  # small input: the adaptive pooling makes the architecture size-agnostic
    return entry.input_shape


def _params(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


# Untrained and in eval mode (BN with unit running variance), 600 residual blocks overflow float32;
# batch statistics keep the activations bounded, as in the first training step.
OVERFLOWS_IN_EVAL_AT_INIT = {"resnet1202_cifar", "resnet1202_cifar_earlyexit"}


@pytest.mark.parametrize("arch", _params(DISTILLER_ARCHS))
def test_builds_and_runs(arch: str) -> None:
    torch.manual_seed(0)
    model = create_model(arch).eval()
    model.train(arch in OVERFLOWS_IN_EVAL_AT_INIT)
    entry = MODELS.get(arch)
    assert (model.arch, model.dataset, model.input_shape, model.num_classes) == (
        arch,
        entry.dataset,
        entry.input_shape,
        entry.num_classes,
    )
    with torch.no_grad():
        out = model(torch.randn(2, *_input_shape(arch)))
    if isinstance(out, list):  # early-exit models return [exit_0, ..., final]
        assert all(o.shape == (2, entry.num_classes) for o in out)
        out = out[-1]
    assert out.shape == (2, entry.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "arch",
    ["simplenet_cifar", "resnet20_cifar", "preact_resnet20_cifar", "plain20_cifar", "vgg11_bn_cifar",
     "simplenet_mnist", "simplenet_v2_mnist", "simplenet_digits", "resnet18", "mobilenet_v1_dropout"],
)  # fmt: skip
def test_num_classes_override(arch: str) -> None:
    model = create_model(arch, num_classes=7).eval()
    assert model.num_classes == 7
    with torch.no_grad():
        assert model(torch.randn(2, *_input_shape(arch))).shape == (2, 7)


@pytest.mark.parametrize(
    "arch",
    ["resnet20_cifar", "preact_resnet20_cifar", "preact_resnet20_cifar_conv_ds", "plain20_cifar_nobn",
     "resnet18", "simplenet_digits", "simplenet_v2_mnist"],
)  # fmt: skip
def test_trains_in_train_mode(arch: str) -> None:
    """In-place ReLUs and adds must leave autograd intact; every parameter gets a gradient."""
    model = create_model(arch).train()
    shape = (3, 32, 32) if MODELS.get(arch).dataset == "imagenet" else _input_shape(arch)
    x = torch.randn(2, *shape)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def _torchvision_twin(arch: str) -> None:
    torch.manual_seed(0)
    theirs = torchvision.models.get_model(arch, weights=None).eval()
    ours = create_model(arch).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_same_function_as_torchvision(arch: str) -> None:
    _torchvision_twin(arch)


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch", ["resnet34", "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2",
             "wide_resnet101_2"],
)  # fmt: skip
def test_same_function_as_torchvision_all_variants(arch: str) -> None:
    _torchvision_twin(arch)


def test_resnet18_has_the_modules_of_the_original_statistics_file(original_samples_dir: Path) -> None:
    stats = original_samples_dir / "resnet18_quant_stats.yaml"
    original = set(yaml.safe_load(stats.read_text()))
    ours = {name for name, _ in create_model("resnet18").named_modules() if name}
    assert original <= ours, sorted(original - ours)


def test_resnet_blocks_list_modules_in_execution_order() -> None:
    model = create_model("resnet50")
    assert list(dict(model.layer1[0].named_children())) == [
        "conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "conv3", "bn3", "downsample", "add", "relu3",
    ]  # fmt: skip
    assert list(dict(create_model("resnet18").layer2[0].named_children())) == [
        "conv1", "bn1", "relu1", "conv2", "bn2", "downsample", "add", "relu2",
    ]  # fmt: skip


def test_original_parameter_names() -> None:
    """Spot checks against the original's state_dict keys of each family."""
    expected = {
        "simplenet_cifar": ["conv1.weight", "conv2.bias", "fc1.weight", "fc3.bias"],
        "preact_resnet20_cifar": ["layer1.0.pre_bn.weight", "layer1.0.bn.running_mean", "final_bn.bias", "fc.weight"],
        "preact_resnet20_cifar_conv_ds": ["layer2.0.downsample.weight", "layer3.0.downsample.weight"],
        "plain20_cifar": ["layer1.0.bn1.weight", "layer3.2.conv2.weight"],
        "vgg16_bn_cifar": ["features.0.weight", "features.1.running_var", "classifier.weight"],
        "simplenet_mnist": ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"],
        "simplenet_v2_mnist": ["fc.weight"],
        "preact_resnet50": ["layer1.0.downsample.0.weight", "layer2.0.pre_bn.weight", "layer1.1.bn2_3.weight"],
        "mobilenet": ["model.0.0.weight", "model.13.4.running_mean", "fc.weight"],
        "mobilenet_v1_dropout": ["conv1.0.weight", "features.12.3.weight", "classifier.1.weight"],
        "alexnet_bn": ["features.0.bias", "features.3.weight", "classifier.1.running_mean", "classifier.6.bias"],
    }
    for arch, keys in expected.items():
        state = create_model(arch).state_dict()
        missing = [k for k in keys if k not in state]
        assert not missing, f"{arch}: {missing}"
    # Modules the original has as attributes, not parameters.
    assert create_model("preact_resnet50").layer1[0].pre_bn is None
    assert create_model("plain20_cifar_nobn").layer1[0].bn1 is None


@pytest.mark.parametrize(
    ("arch", "n_params"),
    [("resnet20_cifar", 272_474), ("simplenet_v2_mnist", 26_080), ("mobilenet", 4_231_976), ("resnet18", 11_689_512)],
)
def test_parameter_counts(arch: str, n_params: int) -> None:
    assert sum(p.numel() for p in create_model(arch).parameters()) == n_params


def test_mobilenet_width_multiplier_keeps_min_channels() -> None:
    assert create_model("mobilenet_025").channels == [8, 16, 32, 64, 128, 256]
    assert create_model("mobilenet_050").channels == [16, 32, 64, 128, 256, 512]


def _digits() -> tuple[torch.Tensor, ...]:
    try:
        source = resources.files("distiller.data").joinpath("digits.npz")
        with source.open("rb") as handle, np.load(handle) as data:
            images, labels, is_test = data["images"], data["labels"], data["is_test"]
    except (FileNotFoundError, ModuleNotFoundError):
        pytest.skip("distiller/data/digits.npz is not available")
    x = torch.from_numpy(images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    test = torch.from_numpy(is_test.astype(bool))
    x = (x - x[~test].mean()) / x[~test].std()
    return x[~test], y[~test], x[test], y[test]


def test_simplenet_digits_learns_digits_in_seconds() -> None:
    x_train, y_train, x_test, y_test = _digits()
    torch.manual_seed(0)
    model = create_model("simplenet_digits")
    epochs, batch = 8, 64
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-4)
    steps = epochs * -(-len(x_train) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.01, total_steps=steps)
    generator = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for i in range(0, len(x_train), batch):
            idx = order[i : i + batch]
            loss = nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    assert accuracy >= 0.97
