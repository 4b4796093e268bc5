"""The registered *_earlyexit architectures: the original's exit points and branch shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.early_exit import exit_names, num_exits
from distiller.models import MODELS, create_model, dataset_for_arch, list_models

CIFAR = [f"resnet{d}_cifar_earlyexit" for d in (20, 32, 44, 56, 110, 1202)]


def test_all_variants_are_registered_for_their_datasets() -> None:
    for name in [*CIFAR, "resnet50_earlyexit"]:
        assert name in list_models() and MODELS.get(name).source == "distiller"
    assert {dataset_for_arch(n) for n in CIFAR} == {"cifar10"}
    assert dataset_for_arch("resnet50_earlyexit") == "imagenet"
    assert set(CIFAR) <= set(list_models("cifar10"))


def test_resnet20_cifar_earlyexit_has_the_original_exit() -> None:
    model = create_model("resnet20_cifar_earlyexit").eval()
    assert exit_names(model) == ["layer1.2.relu2"]  # the output of layer1's third block
    branch = model.early_exits[0]
    assert [type(m) for m in branch] == [nn.AvgPool2d, nn.Flatten, nn.Linear]
    assert (branch[2].in_features, branch[2].out_features) == (1600, 10)
    with torch.no_grad():
        out = model(torch.randn(3, 3, 32, 32))
    assert [tuple(o.shape) for o in out] == [(3, 10), (3, 10)]


def test_resnet20_weights_load_into_the_earlyexit_variant() -> None:
    plain = create_model("resnet20_cifar").state_dict()
    missing, unexpected = create_model("resnet20_cifar_earlyexit").load_state_dict(plain, strict=False)
    assert not unexpected and set(missing) == {"early_exits.0.2.weight", "early_exits.0.2.bias"}


def test_num_classes_reaches_the_exit() -> None:
    model = create_model("resnet32_cifar_earlyexit", num_classes=7)
    assert model.early_exits[0][2].out_features == 7 and num_exits(model) == 1


def test_resnet50_earlyexit_has_the_original_two_exits() -> None:
    model = create_model("resnet50_earlyexit").eval()
    assert exit_names(model) == ["layer1.2.relu3", "layer2.3.relu3"]
    for branch, (cin, mid, features) in zip(model.early_exits, [(256, 10, 1960), (512, 12, 588)]):
        conv, pool, _, fc = branch
        assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (cin, mid, (7, 7), (2, 2))
        assert isinstance(pool, nn.MaxPool2d)
        assert (fc.in_features, fc.out_features) == (features, 1000)


@pytest.mark.slow
def test_resnet50_earlyexit_runs_on_imagenet_inputs() -> None:
    with torch.no_grad():
        out = create_model("resnet50_earlyexit").eval()(torch.randn(1, 3, 224, 224))
    assert [tuple(o.shape) for o in out] == [(1, 1000)] * 3
