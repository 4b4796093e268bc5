"""Layer removal for ResNet-CIFAR: all-zero block convolutions are bypassed with layer gates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ModelError
from distiller.models import create_model
from distiller.thinning import find_zero_conv_layers, resnet_cifar_remove_layers
from shared_data import CHECKPOINTS

FIVE_LAYERS = ["layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2", "layer2.2.conv2"]


def test_zero_block_convs_are_gated_off_and_others_left_alone():
    model = create_model("resnet20_cifar")
    zeroed = ["conv1", "layer1.2.conv2", "layer3.0.conv1", "layer3.1.conv1"]
    with torch.no_grad():
        for name in zeroed:
            model.get_submodule(name).weight.zero_()
    assert find_zero_conv_layers(model) == zeroed
    # The stem has no gate; layer3.0 changes width and resolution, so it cannot be bypassed.
    assert resnet_cifar_remove_layers(model) == ["layer1.2.conv2", "layer3.1.conv1"]
    assert model.layer_gates[0][2] == [True, False]
    assert model.layer_gates[2][:2] == [[True, True], [False, True]]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_wrapped_model_is_accepted():
    model = create_model("resnet20_cifar")
    with torch.no_grad():
        model.get_submodule("layer2.1.conv1").weight.zero_()
    wrapper = nn.Module()
    wrapper.module = model
    assert resnet_cifar_remove_layers(wrapper) == ["layer2.1.conv1"]
    assert model.layer_gates[1][1] == [False, True]


def test_model_without_gates_is_refused():
    model = nn.Sequential(nn.Conv2d(3, 4, 3))
    with torch.no_grad():
        model[0].weight.zero_()
    assert find_zero_conv_layers(model) == ["0"]
    with pytest.raises(ModelError, match="no layer gates"):
        resnet_cifar_remove_layers(model)


@pytest.mark.realdata
def test_ssl_depth_checkpoint_removes_exactly_its_five_layers():
    from distiller.checkpoint import load_checkpoint

    path = CHECKPOINTS / "checkpoint_trained_4D_regularized_5Lremoved.pth.tar"
    if not path.is_file():
        pytest.skip(f"original Distiller checkpoints not found at {CHECKPOINTS} (../shared/data is absent)")
    model = create_model("resnet20_cifar")
    load_checkpoint(path, model)
    assert find_zero_conv_layers(model) == FIVE_LAYERS
    assert resnet_cifar_remove_layers(model) == FIVE_LAYERS
    assert model.layer_gates[0][:2] == [[False, False], [False, False]]
    assert model.layer_gates[1][2] == [True, False]
    gates_off = sum(not g for stage in model.layer_gates for block in stage for g in block)
    assert gates_off == 5
