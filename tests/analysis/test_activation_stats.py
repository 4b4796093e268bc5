"""The minimal activation-statistics collector and the original's per-channel statistics."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn

from distiller.analysis import (
    SummaryActivationStatsCollector,
    activation_channels_apoz,
    activation_channels_l1,
    activation_channels_means,
    module_activation_stats,
)
from distiller.errors import ConfigError

# The original's tests/test_basic.py::test_activations tensor: batch 2, 2 channels, 3x3.
X = torch.tensor(
    [
        [[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]], [[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [4.0, 0.0, 5.0]]],
        [[[4.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 6.0]], [[0.0, 6.0, 0.0], [7.0, 0.0, 8.0], [0.0, 9.0, 0.0]]],
    ]
)


def test_channel_statistics_match_the_original_expected_values() -> None:
    assert torch.equal(activation_channels_l1(X), torch.tensor([21 / 2, 45 / 2]))
    assert torch.equal(activation_channels_apoz(X), torch.tensor([100 * (6 + 6) / (9 + 9), 100 * (4 + 5) / (9 + 9)]))
    assert torch.allclose(activation_channels_means(X), torch.tensor([21 / 18, 45 / 18]))


def test_two_dimensional_activations_have_one_channel_per_feature() -> None:
    x = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 4.0]])
    assert torch.allclose(activation_channels_apoz(x), torch.tensor([100.0, 50.0, 0.0]))
    assert torch.allclose(activation_channels_means(x), torch.tensor([0.0, 0.5, 3.0]))


def model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 4, 1), nn.ReLU(), nn.Conv2d(4, 3, 1), nn.ReLU6())


def test_collector_records_per_module_and_weights_batches_by_size() -> None:
    net = model()
    collector = SummaryActivationStatsCollector(net, "apoz_channels")
    a, b = torch.randn(4, 2, 5, 5), torch.randn(2, 2, 5, 5)
    with collector, torch.no_grad():
        net(a)
        net(b)
    values = collector.value()
    assert set(values) == {"1", "3"} and values["1"].shape == (4,) and values["3"].shape == (3,)
    with torch.no_grad():
        relu_out = torch.cat([net[1](net[0](a)), net[1](net[0](b))])
    assert torch.allclose(values["1"], activation_channels_apoz(relu_out), atol=1e-5)
    assert torch.equal(module_activation_stats(net[1], "apoz_channels"), values["1"])


def test_collector_stops_resets_and_does_not_keep_models_alive() -> None:
    net = model()
    collector = SummaryActivationStatsCollector(net, "mean_channels", module_names=["module.1"])
    collector.start()
    net(torch.randn(1, 2, 3, 3))
    collector.stop()
    before = collector.value()["1"].clone()
    net(torch.randn(1, 2, 3, 3))  # not recorded
    assert torch.equal(collector.value()["1"], before)
    assert collector.reset().value() == {}
    assert module_activation_stats(net[3], "mean_channels") is None  # not watched
    alive = weakref.ref(net)
    del collector, net
    gc.collect()
    assert alive() is None  # statistics are keyed weakly by module: they die with the model


def test_unknown_statistic_or_module_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="apoz_channels"):
        SummaryActivationStatsCollector(model(), "apoz_chanels")
    with pytest.raises(ConfigError, match="no module"):
        SummaryActivationStatsCollector(model(), "apoz_channels", module_names=["relu9"])
