"""The registry and create_model: names, datasets, errors, user registration, devices."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError, ModelError
from distiller.models import (
    DATASET_INFO,
    MODELS,
    ModelEntry,
    create_model,
    dataset_for_arch,
    list_models,
    register_model,
)
from distiller.models.torchvision_models import torchvision_names


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register models without leaking them into other tests."""
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))


REQUIRED = (
    ["simplenet_cifar", "plain20_cifar", "plain20_cifar_nobn", "simplenet_mnist", "simplenet_v2_mnist",
     "simplenet_digits", "mobilenet", "mobilenet_025", "mobilenet_050", "mobilenet_075", "mobilenet_v1_dropout",
     "alexnet_bn", "resnext50_32x4d", "resnext101_32x8d", "wide_resnet50_2", "wide_resnet101_2"]
    + [f"resnet{d}_cifar" for d in (20, 32, 44, 56, 110, 1202)]
    + [f"preact_resnet{d}_cifar{s}" for d in (20, 32, 44, 56, 110) for s in ("", "_conv_ds")]
    + [f"vgg{d}{bn}_cifar" for d in (11, 13, 16, 19) for bn in ("", "_bn")]
    + [f"resnet{d}" for d in (18, 34, 50, 101, 152)]
    + [f"preact_resnet{d}" for d in (18, 34, 50, 101, 152)]
)  # fmt: skip


def test_all_original_architectures_are_registered() -> None:
    missing = [name for name in REQUIRED if name not in MODELS]
    assert not missing
    for name in REQUIRED:
        assert MODELS.get(name).source == "distiller"


def test_entries_are_frozen() -> None:
    entry = MODELS.get("resnet20_cifar")
    assert isinstance(entry, ModelEntry)
    with pytest.raises(AttributeError):
        entry.dataset = "mnist"  # type: ignore[misc]


def test_every_torchvision_classifier_is_registered() -> None:
    names = torchvision_names()
    assert len(names) >= 70
    for name in names:
        entry = MODELS.get(f"torchvision.{name}")
        assert (entry.source, entry.dataset) == ("torchvision", "imagenet")
        assert name in MODELS  # as Distiller's model of that name, or torchvision's under its plain name


def test_distiller_variant_keeps_the_plain_name() -> None:
    assert MODELS.get("resnet18").source == "distiller"
    assert MODELS.get("torchvision.resnet18").source == "torchvision"
    assert MODELS.get("alexnet").source == "torchvision"
    assert MODELS.get("mobilenet_v2").source == "torchvision"
    assert "add" in dict(create_model("resnet18").layer1[0].named_children())
    assert "add" not in dict(create_model("torchvision.resnet18").layer1[0].named_children())


def test_pretrained_names() -> None:
    for name in ("resnet18", "resnet50", "resnext101_32x8d", "wide_resnet50_2"):
        assert MODELS.get(name).pretrained_name == name
    assert MODELS.get("torchvision.alexnet").pretrained_name == "alexnet"
    for name in ("resnet20_cifar", "preact_resnet18", "mobilenet", "simplenet_digits"):
        assert MODELS.get(name).pretrained_name is None


def test_unknown_arch_suggests_close_names() -> None:
    with pytest.raises(ConfigError, match=r"Unknown model 'resnet20_cifr'.*Did you mean 'resnet20_cifar'"):
        create_model("resnet20_cifr")


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="Unknown dataset 'cifar100'.*cifar10"):
        create_model("resnet20_cifar", dataset="cifar100")


@pytest.mark.parametrize(
    ("arch", "dataset"),
    [("resnet20_cifar", "mnist"), ("resnet18", "cifar10"), ("simplenet_mnist", "digits"), ("alexnet", "mnist")],
)
def test_dataset_mismatch(arch: str, dataset: str) -> None:
    with pytest.raises(ModelError, match=rf"Model '{arch}' is built for .* dataset '{dataset}' has inputs of shape"):
        create_model(arch, dataset=dataset)


def test_mnist_models_take_fashionmnist() -> None:
    model = create_model("simplenet_mnist", dataset="FashionMNIST")
    assert (model.dataset, model.input_shape, model.num_classes) == ("fashionmnist", (1, 28, 28), 10)


def test_dataset_defaults_to_native() -> None:
    model = create_model("simplenet_digits")
    assert (model.arch, model.dataset, model.input_shape, model.num_classes) == ("simplenet_digits", "digits",
                                                                                 (1, 8, 8), 10)  # fmt: skip


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_bad_num_classes(bad: object) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        create_model("simplenet_digits", num_classes=bad)  # type: ignore[arg-type]


def test_dataset_for_arch() -> None:
    assert dataset_for_arch("resnet20_cifar") == "cifar10"
    assert dataset_for_arch("simplenet_mnist") == "mnist"
    assert dataset_for_arch("simplenet_digits") == "digits"
    assert dataset_for_arch("resnet18") == "imagenet"
    # Unregistered names follow the original's convention.
    assert dataset_for_arch("my_cifar_net") == "cifar10"
    assert dataset_for_arch("lenet_mnist") == "mnist"
    assert dataset_for_arch("tiny_digits") == "digits"
    assert dataset_for_arch("something_else") == "imagenet"


def test_dataset_for_arch_prefers_registered_dataset(scratch_registry: None) -> None:
    register_model("cifar_looking_but_mnist", "mnist", lambda num_classes=10: nn.Linear(784, num_classes))
    assert dataset_for_arch("cifar_looking_but_mnist") == "mnist"


def test_list_models() -> None:
    everything = list_models()
    assert everything == sorted(everything) == MODELS.names()
    cifar = list_models("cifar10")
    assert "resnet20_cifar" in cifar and "resnet18" not in cifar
    assert "simplenet_mnist" in list_models("fashionmnist")
    assert list_models("digits") == ["convnet_digits", "simplenet_digits"]
    assert "torchvision.vit_b_16" in list_models("imagenet")
    with pytest.raises(ConfigError):
        list_models("svhn")


def test_dataset_info() -> None:
    assert DATASET_INFO["cifar10"] == ((3, 32, 32), 10)
    assert DATASET_INFO["imagenet"] == ((3, 224, 224), 1000)
    assert DATASET_INFO["digits"] == ((1, 8, 8), 10)


class _Tiny(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def test_register_model_as_decorator(scratch_registry: None) -> None:
    @register_model("tiny_user_net", dataset="digits")
    def tiny_user_net(num_classes: int = 10) -> nn.Module:
        return _Tiny(num_classes)

    assert callable(tiny_user_net)
    entry = MODELS.get("tiny_user_net")
    assert (entry.source, entry.dataset, entry.pretrained_name) == ("user", "digits", None)
    model = create_model("tiny_user_net", num_classes=3)
    assert isinstance(model, _Tiny) and model.fc.out_features == 3
    assert "tiny_user_net" in list_models("digits")


def test_register_model_direct_and_without_num_classes(scratch_registry: None) -> None:
    register_model("legacy_user_net", "digits", lambda: _Tiny())
    assert create_model("legacy_user_net").fc.out_features == 10
    with pytest.raises(ModelError, match="no num_classes argument"):
        create_model("legacy_user_net", num_classes=4)


def test_register_model_rejects_taken_names_and_unknown_datasets(scratch_registry: None) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        register_model("resnet20_cifar", "cifar10", _Tiny)
    register_model("resnet20_cifar", "cifar10", _Tiny, replace=True)
    assert MODELS.get("resnet20_cifar").source == "user"
    with pytest.raises(ConfigError, match="Unknown dataset"):
        register_model("svhn_net", "svhn", _Tiny)


def test_invalid_device() -> None:
    with pytest.raises(ConfigError, match="Invalid device"):
        create_model("simplenet_digits", device="gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device() -> None:
    with pytest.raises(ModelError, match="Cannot move the model to device 'cuda'"):
        create_model("simplenet_digits", device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device() -> None:
    model = create_model("simplenet_digits", device="cuda")
    assert next(model.parameters()).is_cuda


@pytest.mark.parametrize("name", ["torchvision.resnet18", "mobilenet_v3_small", "squeezenet1_1", "shufflenet_v2_x0_5"])
def test_small_torchvision_models_run(name: str) -> None:
    model = create_model(name, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_googlenet_returns_a_plain_tensor_in_training() -> None:
    model = create_model("googlenet", num_classes=4).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 4)


def _forward_input(name: str) -> torch.Tensor:
    size = 299 if "inception" in name else 224
    return torch.randn(1, 3, size, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", torchvision_names())
def test_every_torchvision_model_builds(name: str) -> None:
    model = create_model(f"torchvision.{name}").eval()
    assert type(model).__module__.startswith("torchvision.models")
    if sum(p.numel() for p in model.parameters()) < 100_000_000:
        with torch.no_grad():
            assert model(_forward_input(name)).shape == (1, 1000)
