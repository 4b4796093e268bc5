"""attach_exits on any model by module name: outputs, training, names, copies, misuse."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from distiller.early_exit import (
    EarlyExitCriterion,
    EarlyExitMgr,
    attach_exits,
    detach_exits,
    exit_names,
    has_exits,
    num_exits,
)
from distiller.errors import ConfigError


def _branch(channels: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes))


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def _resnet18_with_exits() -> nn.Module:
    model = _resnet18()
    attach_exits(model, [("layer1", _branch(64)), ("layer2", _branch(128))])
    return model


def test_torchvision_resnet18_returns_every_exit_and_the_unchanged_final_output() -> None:
    plain = _resnet18().eval()
    model = _resnet18_with_exits().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        expected = plain(x)
    assert isinstance(out, list) and len(out) == 3
    assert all(o.shape == (2, 10) for o in out)
    torch.testing.assert_close(out[-1], expected, rtol=0, atol=0)  # the backbone computes what it did
    assert has_exits(model) and num_exits(model) == 2 and exit_names(model) == ["layer1", "layer2"]


def test_backbone_names_are_unchanged_and_branches_are_saved() -> None:
    plain_keys = set(_resnet18().state_dict())
    keys = set(_resnet18_with_exits().state_dict())
    assert plain_keys <= keys
    assert keys - plain_keys == {f"early_exits.{i}.2.{p}" for i in (0, 1) for p in ("weight", "bias")}


def test_one_training_step_trains_the_branches_and_lowers_the_loss() -> None:
    model = _resnet18_with_exits().train()
    criterion = EarlyExitCriterion([0.2, 0.3])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(6, 3, 32, 32, generator=generator), torch.randint(0, 10, (6,), generator=generator)
    losses = []
    for step in range(3):
        loss = criterion(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            for branch in model.early_exits:
                assert branch[2].weight.grad is not None and branch[2].weight.grad.abs().sum() > 0
            assert model.layer1[0].conv1.weight.grad.abs().sum() > 0  # exits also train the backbone
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_detach_restores_the_plain_forward_and_returns_the_exits() -> None:
    model = _resnet18_with_exits().eval()
    removed = detach_exits(model)
    assert [name for name, _ in removed] == ["layer1", "layer2"]
    assert not has_exits(model) and not hasattr(model, "early_exits")
    assert isinstance(model(torch.randn(1, 3, 32, 32)), torch.Tensor)
    attach_exits(model, removed)
    assert len(model(torch.randn(1, 3, 32, 32))) == 3


def test_a_deep_copy_runs_its_own_branches() -> None:
    model = _resnet18_with_exits().eval()
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for p in clone.early_exits.parameters():
            p.zero_()
        x = torch.randn(1, 3, 32, 32)
        assert clone(x)[0].abs().sum() == 0
        assert model(x)[0].abs().sum() > 0


def test_manager_keeps_the_original_api() -> None:
    mgr = EarlyExitMgr()
    model = _resnet18()
    points = mgr.attach_exits(model, [("layer1", _branch(64))])
    assert len(points) == 1 and mgr.num_exits(model) == 1
    model.eval()(torch.randn(1, 3, 32, 32))
    assert mgr.get_exits_outputs(model) == []  # cleared after the pass: the outputs are in its result
    assert [n for n, _ in mgr.detach_exits(model)] == ["layer1"]


def test_unknown_module_name_suggests_close_ones() -> None:
    with pytest.raises(ConfigError, match="no module 'layer_1'.*layer1"):
        attach_exits(_resnet18(), [("layer_1", _branch(64))])


@pytest.mark.parametrize(
    ("exits_def", "message"),
    [
        ([], "empty"),
        ([("layer1", _branch(64)), ("layer1", _branch(64))], "more than once"),
        ([("", _branch(64))], "the model itself"),
        ([("layer1", "not a module")], "branch: nn.Module"),
    ],
)
def test_bad_exits_def(exits_def, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        attach_exits(_resnet18(), exits_def)


def test_attaching_twice_or_to_a_bare_sequential_is_refused() -> None:
    model = _resnet18_with_exits()
    with pytest.raises(ConfigError, match="detach_exits"):
        attach_exits(model, [("layer3", _branch(256))])
    with pytest.raises(ConfigError, match="Sequential"):
        attach_exits(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), [("1", nn.Linear(4, 2))])


def test_a_reused_module_and_exits_out_of_order_are_explained() -> None:
    shared = _resnet18().eval()  # torchvision's blocks call their one ReLU twice
    attach_exits(shared, [("layer1.0.relu", _branch(64))])
    with pytest.raises(ConfigError, match="ran twice"):
        shared(torch.randn(1, 3, 32, 32))
    backwards = _resnet18().eval()
    attach_exits(backwards, [("layer2", _branch(128)), ("layer1", _branch(64))])
    with pytest.raises(ConfigError, match="earliest first"):
        backwards(torch.randn(1, 3, 32, 32))
