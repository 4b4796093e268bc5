"""Weights: torchvision pretrained (cache, offline failure) and local files (round trip, bad files)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
import torchvision

from distiller.errors import ModelError
from distiller.models import create_model
from distiller.models import weights as weights_module
from distiller.models.weights import canonical_key


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so no test depends on (or fills) the user's."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> list[float | None]:
    """Every outgoing connection fails at once; records the socket timeout in force at each attempt."""
    timeouts: list[float | None] = []

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        timeouts.append(socket.getdefaulttimeout())
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return timeouts


def _cache_file(torch_home: Path, name: str) -> Path:
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    path = torch_home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_pretrained_for_cifar_arch_is_an_error() -> None:
    with pytest.raises(ModelError, match="'resnet20_cifar' .* has no pretrained weights"):
        create_model("resnet20_cifar", pretrained=True)


def test_pretrained_download_fails_fast_and_explains_offline_use(torch_home: Path, offline: list) -> None:
    with pytest.raises(ModelError) as info:
        create_model("resnet18", pretrained=True)
    message = str(info.value)
    assert "could not download pretrained weights for resnet18" in message
    assert "network is unreachable" in message
    assert "weights_path=FILE" in message and "--pretrained-weights FILE" in message
    assert offline and offline[0] == weights_module.DOWNLOAD_TIMEOUT_S  # the download ran under a timeout
    assert socket.getdefaulttimeout() is None  # ... which was restored afterwards


def test_torchvision_pretrained_download_fails_fast(torch_home: Path, offline: list) -> None:
    with pytest.raises(ModelError, match="could not download pretrained weights for torchvision.squeezenet1_1"):
        create_model("torchvision.squeezenet1_1", pretrained=True)


def test_distiller_resnet_loads_torchvision_weights_from_cache(torch_home: Path, offline: list) -> None:
    torch.manual_seed(1)
    reference = torchvision.models.resnet18().eval()
    torch.save(reference.state_dict(), _cache_file(torch_home, "resnet18"))
    ours = create_model("resnet18", pretrained=True).eval()
    theirs = create_model("torchvision.resnet18", pretrained=True).eval()
    assert not offline  # served from the cache
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected)
        torch.testing.assert_close(theirs(x), expected)


def test_googlenet_pretrained_drops_auxiliary_classifiers(torch_home: Path, offline: list) -> None:
    full = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    torch.save(full.state_dict(), _cache_file(torch_home, "googlenet"))
    model = create_model("googlenet", pretrained=True)
    assert model.aux1 is None and model.transform_input
    assert isinstance(model.train()(torch.randn(2, 3, 64, 64)), torch.Tensor)


def test_pretrained_with_other_class_count_is_an_error() -> None:
    with pytest.raises(ModelError, match="have 1000 classes, but 10 were asked for"):
        create_model("resnet18", pretrained=True, num_classes=10)


@pytest.mark.parametrize("layout", ["bare", "checkpoint", "data_parallel", "features_parallel"])
def test_weights_path_round_trip(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(2)
    source = create_model("vgg11_bn_cifar")
    state = source.state_dict()
    if layout == "data_parallel":
        state = {f"module.{k}": v for k, v in state.items()}
    elif layout == "features_parallel":  # the original parallelized only `features` of VGG / AlexNet
        state = {k.replace("features.", "features.module.", 1): v for k, v in state.items()}
    payload = {"state_dict": state, "arch": "vgg11_bn_cifar", "epoch": 3} if layout == "checkpoint" else state
    path = tmp_path / "weights.pth"
    torch.save(payload, path)
    loaded = create_model("vgg11_bn_cifar", weights_path=path)
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_weights_path_works_with_pretrained_flag(tmp_path: Path, offline: list) -> None:
    source = create_model("resnet18")
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    model = create_model("resnet18", pretrained=True, weights_path=tmp_path / "resnet18.pth")
    assert not offline
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_weights_path_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        create_model("simplenet_digits", weights_path=tmp_path / "nope.pth")


def test_weights_path_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="Cannot read weights file"):
        create_model("simplenet_digits", weights_path=path)


def test_weights_path_refuses_pickled_code(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": create_model("simplenet_digits").state_dict(), "fn": print}, path)
    with pytest.raises(ModelError, match="Cannot read weights file"):
        create_model("simplenet_digits", weights_path=path)


def test_weights_path_without_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "x"}, path)
    with pytest.raises(ModelError, match="holds no state dict"):
        create_model("simplenet_digits", weights_path=path)


def test_weights_of_another_architecture(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(create_model("simplenet_v2_mnist").state_dict(), path)
    with pytest.raises(ModelError, match=r"do not fit model 'simplenet_mnist'.*missing: fc1\.bias"):
        create_model("simplenet_mnist", weights_path=path)


def test_weights_with_other_class_count(tmp_path: Path) -> None:
    path = tmp_path / "five.pth"
    torch.save(create_model("simplenet_digits", num_classes=5).state_dict(), path)
    with pytest.raises(ModelError, match=r"shape mismatch: fc\.bias \(5,\) vs \(10,\)"):
        create_model("simplenet_digits", weights_path=path)
    assert create_model("simplenet_digits", num_classes=5, weights_path=path).num_classes == 5


def test_original_checkpoint_loads(checkpoints_dir: Path) -> None:
    model = create_model("resnet20_cifar", weights_path=checkpoints_dir / "checkpoint_trained_dense.pth.tar")
    raw = torch.load(checkpoints_dir / "checkpoint_trained_dense.pth.tar", map_location="cpu", weights_only=True)
    assert torch.equal(model.fc.weight, raw["state_dict"]["module.fc.weight"])


def test_canonical_key() -> None:
    assert canonical_key("module.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
    assert canonical_key("features.module.0.weight") == "features.0.weight"
    assert canonical_key("fc.weight") == "fc.weight"


@pytest.mark.slow
def test_inception_pretrained_drops_auxiliary_classifier(torch_home: Path, offline: list) -> None:
    full = torchvision.models.inception_v3(aux_logits=True, init_weights=False)
    torch.save(full.state_dict(), _cache_file(torch_home, "inception_v3"))
    model = create_model("torchvision.inception_v3", pretrained=True)
    assert model.AuxLogits is None and model.transform_input
    out = model.train()(torch.randn(2, 3, 299, 299))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)
