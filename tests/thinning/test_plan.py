"""ThinningPlan: plain data that physically shrinks a model and computes the same function."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError, ModelError
from distiller.thinning import TensorSlice, ThinningPlan, ThinningRecipe, applied_thinning_plans

KEEP1 = [0, 2, 3, 5, 7]  # of conv1's 8 filters
KEEP2 = [1, 2, 4]  # of conv2's 6 filters


class ConvBnConvLinear(nn.Module):
    """conv-bn-relu-conv-bn-relu-pool-linear, the smallest model with every kind of coupling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def trained_like(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics, so a wrong running-stat slice changes the output."""
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@torch.no_grad()
def mask_filters(conv: nn.Conv2d, bn: nn.BatchNorm2d, keep: list[int]) -> None:
    """Zero the other filters and their BN outputs (what a filter pruner's masks do)."""
    drop = [i for i in range(conv.out_channels) if i not in keep]
    conv.weight[drop] = 0
    if conv.bias is not None:
        conv.bias[drop] = 0
    bn.weight[drop] = 0
    bn.bias[drop] = 0


def filter_plan() -> ThinningPlan:
    plan = ThinningPlan()
    for name in ("conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"):
        plan.add(name, 0, KEEP1)
    plan.add("conv2.weight", 1, KEEP1)
    for name in ("conv2.weight", "bn2.weight", "bn2.bias", "bn2.running_mean", "bn2.running_var"):
        plan.add(name, 0, KEEP2)
    return plan.add("fc.weight", 1, KEEP2)


@pytest.fixture
def masked() -> ConvBnConvLinear:
    torch.manual_seed(1)
    model = trained_like(ConvBnConvLinear())
    mask_filters(model.conv1, model.bn1, KEEP1)
    mask_filters(model.conv2, model.bn2, KEEP2)
    return model


def test_apply_shrinks_shapes_and_attributes(masked):
    filter_plan().apply(masked)
    assert masked.conv1.weight.shape == (5, 3, 3, 3) and masked.conv1.bias.shape == (5,)
    assert (masked.conv1.out_channels, masked.conv2.in_channels, masked.conv2.out_channels) == (5, 5, 3)
    assert masked.bn1.num_features == 5 and masked.bn1.running_var.shape == (5,)
    assert masked.bn2.num_features == 3
    assert (masked.fc.in_features, masked.fc.out_features) == (3, 4)
    assert "Conv2d(3, 5" in repr(masked)


def test_thinned_model_computes_the_masked_function(masked):
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = masked(x)
        filter_plan().apply(masked)
        actual = masked(x)
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_linear_after_flatten_uses_view_and_reshape():
    torch.manual_seed(2)
    conv, fc = nn.Conv2d(3, 6, 3, padding=1), nn.Linear(6 * 4 * 4, 5)
    model = nn.Sequential(conv, nn.Flatten(), fc)
    with torch.no_grad():
        conv.weight[[0, 3, 5]] = 0
        conv.bias[[0, 3, 5]] = 0
    x = torch.randn(2, 3, 4, 4)
    expected = model(x).detach()
    keep = [1, 2, 4]
    plan = ThinningPlan().add("0.weight", 0, keep).add("0.bias", 0, keep)
    plan.add("2.weight", 1, keep, view=(5, 6, 16), reshape=(5, -1))
    plan.apply(model)
    assert fc.in_features == 3 * 16 and conv.out_channels == 3
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer_cls", [torch.optim.SGD, torch.optim.Adam])
def test_optimizer_state_gradients_and_masks_shrink(masked, optimizer_cls):
    masked.train()
    kwargs = {"momentum": 0.9} if optimizer_cls is torch.optim.SGD else {}
    optimizer = optimizer_cls(masked.parameters(), lr=0.01, **kwargs)
    masked(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()
    masks = {"conv1.weight": (masked.conv1.weight != 0).float(), "module.fc.weight": torch.ones(4, 6), "bn1.bias": None}
    filter_plan().apply(masked, optimizer, masks)
    for p in masked.parameters():
        assert p.grad.shape == p.shape
        for value in optimizer.state[p].values():
            if value.dim():
                assert value.shape == p.shape
    assert masks["conv1.weight"].shape == (5, 3, 3, 3) and masks["module.fc.weight"].shape == (4, 3)
    assert masks["conv1.weight"].all()  # only the zero filters were removed
    masked(torch.randn(2, 3, 8, 8)).sum().backward()
    optimizer.step()  # the optimizer still holds the same Parameter objects, now smaller


def test_sgd_momentum_keeps_the_right_rows(masked):
    optimizer = torch.optim.SGD(masked.parameters(), lr=0.1, momentum=0.9)
    with torch.no_grad():
        for p in masked.parameters():
            p.grad = torch.randn_like(p)
    optimizer.step()
    before = optimizer.state[masked.conv1.weight]["momentum_buffer"].clone()
    filter_plan().apply(masked, optimizer)
    torch.testing.assert_close(optimizer.state[masked.conv1.weight]["momentum_buffer"], before[KEEP1])


def test_plan_round_trips_as_plain_data():
    plan = filter_plan().add("fc.weight", 1, [0], view=(4, 1, 3), reshape=(4, -1))
    data = plan.to_dict()
    assert ThinningPlan.from_dict(json.loads(json.dumps(data))) == plan


def test_apply_records_the_plan_on_the_model(masked):
    plan = filter_plan()
    plan.apply(masked)
    assert applied_thinning_plans(masked) == [plan]
    filter_plan().apply(trained_like(ConvBnConvLinear()), record=False)


def test_wrapped_model_uses_canonical_names(masked):
    wrapper = nn.Module()
    wrapper.module = masked
    filter_plan().apply(wrapper)
    assert masked.conv1.out_channels == 5
    assert applied_thinning_plans(wrapper)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (ThinningPlan().add("conv9.weight", 0, [0]), "does not have"),
        (ThinningPlan().add("conv1.weight", 0, [8]), "has only 8"),
        (ThinningPlan().add("conv1.weight", 4, [0]), "Cannot slice dim 4"),
        (ThinningPlan().add("bn1.weight", 0, [0, 1]), "different lengths"),
        (ThinningPlan().add("conv1.weight", 0, [0, 1]), "bias"),
    ],
)
def test_a_plan_that_does_not_fit_changes_nothing(masked, plan, message):
    before = {k: v.clone() for k, v in masked.state_dict().items()}
    with pytest.raises(ModelError, match=message):
        plan.apply(masked)
    after = masked.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert masked.conv1.out_channels == 8 and not applied_thinning_plans(masked)


def test_applying_twice_is_refused(masked):
    plan = filter_plan()
    plan.apply(masked)
    with pytest.raises(ModelError, match="already applied"):
        plan.apply(masked)


def test_depthwise_convolution_changes_groups():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4, padding=1), nn.Conv2d(4, 2, 1))
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        x[:, [1, 2]] = 0  # channels 1 and 2 carry nothing
        model[0].bias[[1, 2]] = 0
        expected = model(x)
    ThinningPlan().add("0.weight", 0, [0, 3]).add("0.bias", 0, [0, 3]).add("1.weight", 1, [0, 3]).apply(model)
    depthwise = model[0]
    assert (depthwise.in_channels, depthwise.out_channels, depthwise.groups) == (2, 2, 2)
    torch.testing.assert_close(model(x[:, [0, 3]]), expected)


def test_grouped_convolution_with_unequal_groups_is_refused():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2, bias=False))
    with pytest.raises(ModelError, match="grouped convolution"):
        ThinningPlan().add("0.weight", 0, [0, 1, 2]).apply(model)


def test_from_legacy_recipe_normalizes_names_and_drops_stored_attributes():
    recipe = ThinningRecipe(
        modules={
            "module.conv2": {"in_channels": 5, "out_channels": 5},  # the original set out_channels wrongly
            "module.bn1": {
                "num_features": 5,
                "running_mean": (0, torch.tensor(KEEP1)),
                "running_var": (0, torch.tensor(KEEP1)),
            },
        },
        parameters={
            "module.conv1.weight": [(0, torch.tensor(KEEP1))],
            "module.conv1.bias": [(0, torch.tensor(KEEP1))],
            "module.bn1.weight": [(0, torch.tensor(KEEP1))],
            "module.bn1.bias": [(0, torch.tensor(KEEP1))],
            "module.conv2.weight": [(1, torch.tensor(KEEP1))],
        },
    )
    plan = ThinningPlan.from_legacy_recipe(recipe)
    assert TensorSlice("bn1.running_mean", 0, tuple(KEEP1)) in plan.slices
    assert all("module" not in s.tensor for s in plan.slices)
    model = trained_like(ConvBnConvLinear())
    plan.apply(model)
    assert (model.conv1.out_channels, model.conv2.in_channels, model.conv2.out_channels) == (5, 5, 6)


@pytest.mark.parametrize(
    "data",
    [
        {"slices": "x"},
        {"slices": [{"tensor": "a", "dim": 0}]},
        {"slices": [{"tensor": "a", "dim": 0, "keep": []}]},
        {"slices": [{"tensor": "a", "dim": 0, "keep": [1, 1]}]},
        {"slices": [{"tensor": "a", "dim": 0, "keep": [0], "view": [1]}]},
        {"format": "distiller-nn/thinning-plan/99", "slices": []},
    ],
)
def test_malformed_plan_data_is_a_config_error(data):
    with pytest.raises(ConfigError):
        ThinningPlan.from_dict(data)
