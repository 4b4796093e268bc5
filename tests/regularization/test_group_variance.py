"""GroupVarianceRegularizer: strength / (unbiased variance of the input-channel L2 norms)."""

from __future__ import annotations

import math

import pytest
import torch

from distiller.errors import ConfigError
from distiller.regularization import GroupVarianceRegularizer


def channel_norms_by_loop(w: torch.Tensor) -> list[float]:
    O, I, H, K = w.shape  # noqa: E741
    at = w.tolist()
    return [math.sqrt(sum(at[o][i][h][k] ** 2 for o in range(O) for h in range(H) for k in range(K))) for i in range(I)]


def sample_variance(xs: list[float]) -> float:
    mean = sum(xs) / len(xs)
    return sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def test_loss_equals_hand_computed(net):
    reg = GroupVarianceRegularizer("gv", net, {"conv.weight": [0.2, "Channels"]})
    expected = 0.2 / sample_variance(channel_norms_by_loop(net.conv.weight.detach()))
    loss = reg.loss(net.conv.weight, "conv.weight", torch.tensor(0.0, dtype=torch.float64))
    assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_linear_channels_are_columns(net):
    reg = GroupVarianceRegularizer("gv", net, {"fc.weight": [0.2, "Channels"]})
    w = net.fc.weight.detach().tolist()
    cols = [math.sqrt(sum(w[r][c] ** 2 for r in range(3))) for c in range(4)]
    assert reg.loss(net.fc.weight, "fc.weight", 0.0).item() == pytest.approx(0.2 / sample_variance(cols), rel=1e-12)


def test_gradient_spreads_channel_norms(net):
    """Descending the loss increases the variance of the channel norms."""
    reg = GroupVarianceRegularizer("gv", net, {"conv.weight": [1.0, "Channels"]})
    before = sample_variance(channel_norms_by_loop(net.conv.weight.detach()))
    reg.loss(net.conv.weight, "conv.weight", 0.0).backward()
    with torch.no_grad():
        net.conv.weight -= 1e-3 * net.conv.weight.grad
    assert sample_variance(channel_norms_by_loop(net.conv.weight.detach())) > before


def test_equal_norms_give_finite_loss(net):
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
    reg = GroupVarianceRegularizer("gv", net, {"conv.weight": [0.2, "Channels"]})
    assert math.isfinite(reg.loss(net.conv.weight, "conv.weight", 0.0).item())


@pytest.mark.parametrize("group_type", ["Filters", "4D", "Channels+4D"])
def test_only_channels(net, group_type):
    with pytest.raises(ConfigError, match="Channels"):
        GroupVarianceRegularizer("gv", net, {"conv.weight": [0.2, group_type]})


def test_needs_two_channels():
    model = torch.nn.Conv2d(1, 4, 3)
    with pytest.raises(ConfigError, match="at least 2 input channels"):
        GroupVarianceRegularizer("gv", model, {"weight": [0.2, "Channels"]})
