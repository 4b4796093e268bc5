"""DropFilterRegularizer: whole filters dropped at rate p in training, identity in evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.regularization import (
    REGULARIZERS,
    Conv2dWithMask,
    DropFilterRegularizer,
    restore_conv2d,
)


class TwoConvs(nn.Module):
    def __init__(self, filters: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, filters, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(filters, 8, 1, dilation=1, groups=1)
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.conv2(self.conv1(x))


def _positive_model(filters: int = 64) -> TwoConvs:
    torch.manual_seed(0)
    model = TwoConvs(filters)
    with torch.no_grad():
        model.conv1.weight.abs_()  # every filter has a positive response to a positive input
    return model


def test_built_from_yaml_arguments_replaces_every_conv_sharing_parameters():
    model = _positive_model()
    weight, bias = model.conv2.weight, model.conv2.bias
    keys = list(model.state_dict())
    reg = REGULARIZERS.get("DropFilterRegularizer")("drop", model, None, drop_prob=0.2, frequency=4)
    assert isinstance(model.conv1, Conv2dWithMask) and isinstance(model.conv2, Conv2dWithMask)
    assert model.conv2.weight is weight and model.conv2.bias is bias  # the optimizer's tensors stay valid
    assert list(model.state_dict()) == keys
    assert set(reg.reg_regims) == {"conv1.weight", "conv2.weight"}
    assert reg.loss(model.conv1.weight, "conv1.weight", 1.5) == 1.5  # no loss term


def test_regims_select_convolutions_with_their_own_probability():
    model = _positive_model()
    DropFilterRegularizer("drop", model, {"module.conv1.weight": 0.3})
    assert isinstance(model.conv1, Conv2dWithMask) and model.conv1.drop_prob == 0.3
    assert type(model.conv2) is nn.Conv2d
    model = _positive_model()
    DropFilterRegularizer("drop", model, ["conv2.weight"], drop_prob=0.4)
    assert type(model.conv1) is nn.Conv2d and model.conv2.drop_prob == 0.4


def test_drops_whole_filters_at_the_configured_rate_in_training():
    model = _positive_model(filters=64)
    DropFilterRegularizer("drop", model, {"conv1.weight": 0.25}, frequency=1)
    conv = model.conv1.train()
    x = torch.rand(1, 3, 6, 6) + 0.1
    plain = nn.functional.conv2d(x, conv.weight, padding=1)
    dropped = 0
    passes = 100
    for _ in range(passes):
        out = conv(x)
        zero = (out == 0).flatten(2).all(dim=2)[0]
        alive = (out != 0).flatten(2).all(dim=2)[0]
        assert bool((zero | alive).all())  # each filter is dropped or kept whole
        torch.testing.assert_close(zero, conv.last_keep_mask == 0)
        # survivors are rescaled by the share of the L1 mass that survived
        l1 = conv.weight.detach().abs().flatten(1).sum(1)
        share = max(float((l1 * conv.last_keep_mask).sum() / l1.sum()), 0.2)
        torch.testing.assert_close(out[0, alive], plain[0, alive] / share)
        dropped += int(zero.sum())
    rate = dropped / (passes * 64)
    assert 0.21 < rate < 0.29


def test_drops_only_every_frequency_passes():
    model = _positive_model(filters=32)
    DropFilterRegularizer("drop", model, {"conv1.weight": 0.5}, frequency=3)
    x = torch.rand(1, 3, 5, 5) + 0.1
    plain = nn.functional.conv2d(x, model.conv1.weight, padding=1)
    outs = [model.conv1(x) for _ in range(6)]
    for i in (0, 1, 3, 4):
        torch.testing.assert_close(outs[i], plain)
    for i in (2, 5):
        assert (outs[i] == 0).flatten(2).all(dim=2).any()


def test_identity_in_eval_mode():
    model = _positive_model()
    x = torch.rand(2, 3, 5, 5)
    expected = model(x)
    DropFilterRegularizer("drop", model, drop_prob=0.5, frequency=1)
    model.eval()
    for _ in range(5):
        torch.testing.assert_close(model(x), expected)


def test_gradients_reach_the_shared_parameters():
    model = _positive_model(filters=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    DropFilterRegularizer("drop", model, drop_prob=0.5, frequency=1)
    before = model.conv1.weight.detach().clone()
    model(torch.rand(2, 3, 5, 5)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.conv1.weight.detach(), before)


def test_restore_and_rewrap():
    model = _positive_model()
    weight = model.conv1.weight
    reg = DropFilterRegularizer("drop", model)
    DropFilterRegularizer("again", model, drop_prob=0.3)  # reconfigures, does not wrap twice
    assert type(model.conv1) is Conv2dWithMask and model.conv1.drop_prob == 0.3
    assert sorted(reg.remove()) == ["conv1", "conv2"]
    assert type(model.conv1) is nn.Conv2d and model.conv1.weight is weight
    assert restore_conv2d(model) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"reg_regims": {"fc.weight": 0.1}}, "nn.Conv2d"),
        ({"reg_regims": {"conv2.bias": 0.1}}, "nn.Conv2d"),
        ({"reg_regims": {"conv3.weight": 0.1}}, "conv3.weight"),
        ({"reg_regims": {"conv1.weight": 1.0}}, r"\[0, 1\)"),
        ({"drop_prob": -0.1}, r"\[0, 1\)"),
        ({"frequency": 0}, "frequency"),
        ({"min_scale": 0.0}, "min_scale"),
        ({"threshold_criteria": "Max"}, "threshold_criteria"),
        ({"reg_regims": "conv1.weight"}, "reg_regims"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        DropFilterRegularizer("drop", _positive_model(), **kwargs)


def test_model_without_convolutions():
    with pytest.raises(ConfigError, match="no nn.Conv2d"):
        DropFilterRegularizer("drop", nn.Linear(2, 2))


def test_drop_filter_drops_only_inside_its_policy_window():
    """A DropFilter policy scheduled for epoch 1 leaves epochs 0 and 2 untouched."""
    import torch.nn.functional as F

    from distiller.config import dict_config

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = {
        "regularizers": {"df": {"class": "DropFilterRegularizer", "drop_prob": 0.5, "frequency": 1}},
        "policies": [{"regularizer": {"instance_name": "df"}, "epochs": [1]}],
    }
    scheduler = dict_config(model, opt, schedule)
    model.train()
    x = torch.randn(2, 1, 5, 5)

    def dense():
        return F.conv2d(x, model[0].weight, model[0].bias)

    def dropped_in(epoch):
        scheduler.on_epoch_begin(epoch, opt)
        outputs_differ = any(not torch.allclose(model(x), dense()) for _ in range(5))
        scheduler.on_epoch_end(epoch, opt)
        return outputs_differ

    assert not dropped_in(0)
    assert dropped_in(1)
    assert not dropped_in(2)
