"""GroupLassoRegularizer: every group type against loops written from the definition."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from distiller.errors import ConfigError
from distiller.regularization import GROUP_TYPES, GroupLassoRegularizer
from distiller.sparsity import MaskSet

STRENGTH = 0.3


def l2(values) -> float:
    return math.sqrt(sum(v * v for v in values))


def conv_groups(w: torch.Tensor, structure: str) -> list[list[float]]:
    """The structures of a (O, I, H, K) weight, enumerated element by element."""
    O, I, H, K = w.shape  # noqa: E741
    at = w.tolist()
    if structure == "Filters":
        return [[at[o][i][h][k] for i in range(I) for h in range(H) for k in range(K)] for o in range(O)]
    if structure == "Channels":
        return [[at[o][i][h][k] for o in range(O) for h in range(H) for k in range(K)] for i in range(I)]
    if structure == "2D":
        return [[at[o][i][h][k] for h in range(H) for k in range(K)] for o in range(O) for i in range(I)]
    if structure == "4D":
        return [[at[o][i][h][k] for o, i, h, k in itertools.product(range(O), range(I), range(H), range(K))]]
    raise AssertionError(structure)


def fc_groups(w: torch.Tensor, structure: str) -> list[list[float]]:
    R, C = w.shape
    at = w.tolist()
    if structure in ("Rows", "Filters"):
        return [[at[r][c] for c in range(C)] for r in range(R)]
    if structure in ("Cols", "Channels"):
        return [[at[r][c] for r in range(R)] for c in range(C)]
    if structure == "4D":
        return [[at[r][c] for r in range(R) for c in range(C)]]
    raise AssertionError(structure)


def expected_loss(groups_of, w, structures) -> float:
    return STRENGTH * sum(l2(g) for s in structures for g in groups_of(w, s))


CONV_CASES = {
    "2D": ["2D"],
    "Kernels": ["2D"],
    "Channels": ["Channels"],
    "Filters": ["Filters"],
    "3D": ["Filters"],
    "4D": ["4D"],
    "Layer": ["4D"],
    "Channels+4D": ["Channels", "4D"],
    "4D+Channels": ["Channels", "4D"],
}
FC_CASES = {
    "Rows": ["Rows"],
    "Cols": ["Cols"],
    "Rows+Cols": ["Rows", "Cols"],
    "Cols+Rows": ["Rows", "Cols"],
    "Channels": ["Channels"],
    "Filters": ["Filters"],
    "4D": ["4D"],
}


def test_every_group_type_is_tested():
    assert set(GROUP_TYPES) == set(CONV_CASES) | set(FC_CASES)


@pytest.mark.parametrize("group_type", list(CONV_CASES))
def test_conv_loss_equals_hand_computed(net, group_type):
    reg = GroupLassoRegularizer("gl", net, {"conv.weight": [STRENGTH, group_type]})
    w = net.conv.weight
    loss = reg.loss(w, "conv.weight", torch.tensor(0.0, dtype=torch.float64), None)
    assert loss.item() == pytest.approx(expected_loss(conv_groups, w.detach(), CONV_CASES[group_type]), rel=1e-12)


@pytest.mark.parametrize("group_type", list(FC_CASES))
def test_linear_loss_equals_hand_computed(net, group_type):
    reg = GroupLassoRegularizer("gl", net, {"fc.weight": [STRENGTH, group_type]})
    w = net.fc.weight
    loss = reg.loss(w, "fc.weight", 0.0, None)
    assert loss.item() == pytest.approx(expected_loss(fc_groups, w.detach(), FC_CASES[group_type]), rel=1e-12)


def test_channels_plus_4d_gradient(net):
    """Channels+4D (which crashed in the original) back-propagates the sum of both penalties."""
    reg = GroupLassoRegularizer("gl", net, {"conv.weight": [STRENGTH, "Channels+4D"]})
    reg.loss(net.conv.weight, "conv.weight", 0.0).backward()
    w = net.conv.weight.detach()
    channel_norms = w.pow(2).sum(dim=(0, 2, 3)).sqrt().view(1, -1, 1, 1)
    expected = STRENGTH * (w / channel_norms + w / w.norm())
    torch.testing.assert_close(net.conv.weight.grad, expected)


def test_zero_group_has_finite_gradient(net):
    with torch.no_grad():
        net.conv.weight[1].zero_()
    reg = GroupLassoRegularizer("gl", net, {"conv.weight": [STRENGTH, "Filters"]})
    reg.loss(net.conv.weight, "conv.weight", 0.0).backward()
    assert torch.isfinite(net.conv.weight.grad).all()
    assert net.conv.weight.grad[1].abs().sum() == 0


# --- threshold masks ------------------------------------------------------------------------


def _conv_weight(net, values):
    with torch.no_grad():
        net.conv.weight.copy_(torch.as_tensor(values, dtype=torch.float64))


def _threshold(net, name, regime, criteria):
    masks = MaskSet.for_model(net)
    reg = GroupLassoRegularizer("gl", net, {name: regime}, threshold_criteria=criteria)
    param = net.get_parameter(name)
    reg.threshold(param, name, masks)
    return masks


def test_filters_threshold_mean_abs_vs_max(net):
    w = torch.ones(3, 2, 2, 2, dtype=torch.float64)
    w[1] = 0.01  # small filter: dropped by both criteria
    w[2] = 0.01
    w[2, 0, 0, 0] = 0.5  # one large element: Max keeps the filter, Mean_Abs (mean 0.07) drops it
    _conv_weight(net, w)
    regime = [0.1, "Filters"]
    mean_abs = _threshold(net, "conv.weight", regime, "Mean_Abs")["conv.weight"].mask
    maximum = _threshold(net, "conv.weight", regime, "Max")["conv.weight"].mask
    assert mean_abs.shape == w.shape
    assert [bool(mean_abs[f].all()) for f in range(3)] == [True, False, False]
    assert [bool(mean_abs[f].any()) for f in range(3)] == [True, False, False]
    assert [bool(maximum[f].all()) for f in range(3)] == [True, False, True]
    assert [bool(maximum[f].any()) for f in range(3)] == [True, False, True]


def test_channels_threshold_zeros_input_channels_and_is_one_shot(net):
    w = torch.ones(3, 2, 2, 2, dtype=torch.float64)
    w[:, 1] = 0.05
    _conv_weight(net, w)
    masks = _threshold(net, "conv.weight", [0.1, "Channels"], "Mean_Abs")
    masker = masks["conv.weight"]
    assert masker.is_regularization_mask
    expected = torch.ones_like(w)
    expected[:, 1] = 0
    torch.testing.assert_close(masker.mask, expected)
    masks.apply(net)
    torch.testing.assert_close(net.conv.weight.detach(), w * expected)
    assert masker.mask is None


def test_kernels_threshold(net):
    w = torch.ones(3, 2, 2, 2, dtype=torch.float64)
    w[2, 0] = -0.05
    w[0, 1] = 0.02
    _conv_weight(net, w)
    mask = _threshold(net, "conv.weight", [0.1, "2D"], "Max")["conv.weight"].mask
    kept = {(o, i): bool(mask[o, i].all()) for o in range(3) for i in range(2)}
    dropped = {(o, i): not bool(mask[o, i].any()) for o in range(3) for i in range(2)}
    assert all(kept[k] or dropped[k] for k in kept)  # whole kernels only
    assert sorted(k for k, v in dropped.items() if v) == [(0, 1), (2, 0)]


def test_4d_threshold_all_or_nothing(net):
    _conv_weight(net, torch.full((3, 2, 2, 2), 0.05, dtype=torch.float64))
    assert not _threshold(net, "conv.weight", [0.1, "4D"], "Max")["conv.weight"].mask.any()
    assert _threshold(net, "conv.weight", [0.01, "4D"], "Max")["conv.weight"].mask.all()


def test_channels_plus_4d_threshold(net):
    w = torch.ones(3, 2, 2, 2, dtype=torch.float64)
    w[:, 0] = 0.01
    _conv_weight(net, w)
    mask = _threshold(net, "conv.weight", [0.1, "Channels+4D"], "Mean_Abs")["conv.weight"].mask
    assert not mask[:, 0].any() and mask[:, 1].all()
    mask = _threshold(net, "conv.weight", [2.0, "Channels+4D"], "Mean_Abs")["conv.weight"].mask
    assert not mask.any()


def test_rows_cols_thresholds(net):
    w = torch.ones(3, 4, dtype=torch.float64)
    w[1] = 0.01
    w[:, 3] = 0.01
    with torch.no_grad():
        net.fc.weight.copy_(w)
    rows = _threshold(net, "fc.weight", [0.1, "Rows"], "Max")["fc.weight"].mask
    assert rows[[0, 2]].all() and not rows[1].any()
    cols = _threshold(net, "fc.weight", [0.1, "Cols"], "Max")["fc.weight"].mask
    assert cols[:, :3].all() and not cols[:, 3].any()
    both = _threshold(net, "fc.weight", [0.1, "Rows+Cols"], "Max")["fc.weight"].mask
    torch.testing.assert_close(both, rows * cols)


def test_no_threshold_without_criteria(net):
    masks = _threshold(net, "conv.weight", [10.0, "Filters"], None)
    assert masks["conv.weight"].mask is None


# --- bad input ------------------------------------------------------------------------------


def test_unknown_group_type_suggests(net):
    with pytest.raises(ConfigError) as err:
        GroupLassoRegularizer("gl", net, {"conv.weight": [0.1, "channels"]})
    assert "'channels'" in str(err.value) and "'Channels'" in str(err.value) and "conv.weight" in str(err.value)


@pytest.mark.parametrize(
    "name, group_type",
    [("fc.weight", "2D"), ("conv.weight", "Rows"), ("conv.weight", "Cols"), ("bn.weight", "Filters")],
)
def test_group_that_does_not_fit_the_shape_raises(net, name, group_type):
    with pytest.raises(ConfigError, match=f"{group_type}.*shape"):
        GroupLassoRegularizer("gl", net, {name: [0.1, group_type]})


@pytest.mark.parametrize("regime", [0.1, [0.1], [0.1, "Filters", "extra"], "Filters"])
def test_regime_must_be_strength_and_group(net, regime):
    with pytest.raises(ConfigError, match=r"\[strength, group_type\]"):
        GroupLassoRegularizer("gl", net, {"conv.weight": regime})


def test_unknown_threshold_criteria_suggests(net):
    with pytest.raises(ConfigError, match="'Mean_Abs'"):
        GroupLassoRegularizer("gl", net, {"conv.weight": [0.1, "Filters"]}, threshold_criteria="Mean_abs")


def test_threshold_criteria_must_be_a_name(net):
    with pytest.raises(ConfigError, match="threshold_criteria"):
        GroupLassoRegularizer("gl", net, {"conv.weight": [0.1, "Filters"]}, threshold_criteria=["Max"])
