"""The contract every regularizer shares: registry, names, errors, the loss accumulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.regularization import (
    REGULARIZERS,
    DropFilterRegularizer,
    GroupLassoRegularizer,
    GroupVarianceRegularizer,
    L1Regularizer,
    Regularizer,
    register_regularizer,
)


def test_original_names_are_registered():
    for cls in (L1Regularizer, GroupLassoRegularizer, GroupVarianceRegularizer, DropFilterRegularizer):
        assert REGULARIZERS.get(cls.__name__) is cls


def test_unknown_class_suggests_close_name():
    with pytest.raises(ConfigError, match="GroupLassoRegularizer"):
        REGULARIZERS.get("GroupLasoRegularizer")


def test_user_registered_regularizer():
    @register_regularizer("ConstantTestRegularizer")
    class Constant(Regularizer):
        def param_loss(self, param, regime):
            return param.new_tensor(regime)

    try:
        model = nn.Linear(2, 2)
        reg = REGULARIZERS.get("ConstantTestRegularizer")("c", model, {"weight": 3.0})
        assert reg.loss(model.weight, "weight", 1.0).item() == 4.0
        assert reg.loss_component_name == "Constant_loss"
    finally:
        REGULARIZERS._entries.pop("ConstantTestRegularizer")


@pytest.mark.parametrize(
    "cls, regime",
    [(L1Regularizer, 0.1), (GroupLassoRegularizer, [0.1, "Filters"]), (GroupVarianceRegularizer, [0.1, "Channels"])],
)
def test_loss_component_name(net, cls, regime):
    assert cls("r", net, {"conv.weight": regime}).loss_component_name == f"{cls.__name__}_loss"


def test_unknown_parameter_name_raises_with_suggestion(net):
    with pytest.raises(ConfigError) as err:
        L1Regularizer("l1", net, {"conv.weights": 0.1})
    message = str(err.value)
    assert "'conv.weights'" in message and "'conv.weight'" in message and "'l1'" in message


def test_unknown_parameter_name_raises_for_group_lasso(net):
    with pytest.raises(ConfigError, match="layer9.conv.weight"):
        GroupLassoRegularizer("gl", net, {"layer9.conv.weight": [0.1, "Filters"]})


def test_module_prefix_accepted_in_regims_and_calls(net):
    wrapped = nn.Sequential()
    wrapped.add_module("module", net)  # the names of a DataParallel-wrapped model
    reg = L1Regularizer("l1", wrapped, {"module.conv.weight": 0.5})
    assert list(reg.reg_regims) == ["conv.weight"]
    expected = 0.5 * net.conv.weight.abs().sum()
    for name in ("conv.weight", "module.conv.weight"):
        torch.testing.assert_close(reg.loss(net.conv.weight, name, torch.tensor(0.0)), expected)
    reg = L1Regularizer("l1", net, {"module.conv.weight": 0.5})
    torch.testing.assert_close(reg.loss(net.conv.weight, "conv.weight", 0.0), expected)


def test_same_parameter_twice_raises(net):
    with pytest.raises(ConfigError, match="twice"):
        L1Regularizer("l1", net, {"conv.weight": 0.1, "module.conv.weight": 0.2})


@pytest.mark.parametrize("regims", [None, {}, ["conv.weight"], "conv.weight"])
def test_regims_must_be_a_nonempty_mapping(net, regims):
    with pytest.raises(ConfigError, match="reg_regims"):
        L1Regularizer("l1", net, regims)


@pytest.mark.parametrize("strength", ["strong", None, [0.1], -0.1, float("nan"), float("inf"), True])
def test_bad_strength_raises(net, strength):
    with pytest.raises(ConfigError, match="strength"):
        L1Regularizer("l1", net, {"conv.weight": strength})
    with pytest.raises(ConfigError, match="strength"):
        GroupLassoRegularizer("gl", net, {"conv.weight": [strength, "Filters"]})


def test_numeric_string_strength_is_accepted(net):
    # PyYAML reads 1e-4 (no dot) as a string.
    assert L1Regularizer("l1", net, {"conv.weight": "1e-4"}).reg_regims["conv.weight"] == pytest.approx(1e-4)


def test_unregularized_parameter_leaves_loss_unchanged(net):
    reg = L1Regularizer("l1", net, {"conv.weight": 0.1})
    acc = torch.tensor(2.5)
    assert reg.loss(net.fc.weight, "fc.weight", acc, None) is acc


def test_policy_style_accumulation_is_differentiable(net):
    """Summing over named_parameters into a zero tensor, as RegularizationPolicy does."""
    reg = L1Regularizer("l1", net, {"conv.weight": 0.1, "fc.weight": 0.2})
    total = torch.tensor(0.0, dtype=torch.float64)
    for name, param in net.named_parameters():
        total = reg.loss(param, name, total, None)
    total.backward()
    torch.testing.assert_close(net.conv.weight.grad, 0.1 * net.conv.weight.detach().sign())
    torch.testing.assert_close(net.fc.weight.grad, 0.2 * net.fc.weight.detach().sign())
    assert net.fc.bias.grad is None
