"""Activation-ranked filter pruners: statistics found by module, APoZ/mean ranking, clear errors."""

from __future__ import annotations

import pytest
import torch
from pruning_helpers import compute_masks, window_meta
from torch import nn

from distiller.analysis import SummaryActivationStatsCollector
from distiller.errors import ConfigError
from distiller.pruning import ActivationAPoZRankedFilterPruner, ActivationMeanRankedFilterPruner
from distiller.pruning.activation_ranked import consumer_activation


class Block(nn.Module):
    """Names that the original's ``.conv`` -> ``.relu`` renaming cannot map (``features`` / ``act``)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.head = nn.Conv2d(8, 4, 1)
        self.head_act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_act(self.head(self.act(self.norm(self.features(x)))))


def biased_block() -> Block:
    """Filter i's bias is (i - 4): low filters are mostly zero after the ReLU, high ones mostly positive."""
    model = Block().eval()
    with torch.no_grad():
        model.features.weight.mul_(0.01)
        model.features.bias.copy_(torch.arange(8.0) - 4)
    return model


def collect(model: nn.Module, stat: str) -> SummaryActivationStatsCollector:
    collector = SummaryActivationStatsCollector(model, stat)
    with collector, torch.no_grad():
        for seed in range(3):
            model(torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(seed)))
    return collector


def pruned_filters(mask: torch.Tensor) -> set[int]:
    return set(torch.nonzero(mask.reshape(mask.shape[0], -1).amax(dim=1) == 0).reshape(-1).tolist())


def test_apoz_prunes_the_filters_whose_activations_are_mostly_zero() -> None:
    model = biased_block()
    collector = collect(model, "apoz_channels")
    apoz = collector.value()["act"]
    assert apoz.shape == (8,)
    pruner = ActivationAPoZRankedFilterPruner("apoz", "Filters", 0.5, ["features.weight"])
    masks = compute_masks(model, pruner, window_meta(model))
    pruned = pruned_filters(masks["features.weight"].mask)
    assert pruned == set(torch.topk(apoz, 4).indices.tolist())
    assert pruned == {0, 1, 2, 3}  # negative biases: (almost) always zero after the ReLU


def test_mean_activation_prunes_the_filters_with_the_lowest_mean() -> None:
    model = biased_block()
    collect(model, "mean_channels")
    pruner = ActivationMeanRankedFilterPruner("mean", "Filters", 0.25, ["features.weight"])
    masks = compute_masks(model, pruner, window_meta(model))
    assert pruned_filters(masks["features.weight"].mask) == {0, 1}


def test_the_activation_is_found_through_normalization_layers() -> None:
    model = biased_block()
    collect(model, "apoz_channels")
    assert consumer_activation(model, "features", "apoz_channels")[0] == "act"
    assert consumer_activation(model, "head", "apoz_channels")[0] == "head_act"


def test_an_explicit_activation_map_overrides_the_lookup() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 1), nn.ReLU())
    collect(model, "apoz_channels")
    pruner = ActivationAPoZRankedFilterPruner("apoz", "Filters", 0.5, ["1.weight", "0.weight"])
    with pytest.raises(ConfigError, match="activation_modules"):
        compute_masks(model, pruner, window_meta(model))  # conv 0 is followed by a conv, not an activation
    pruner = ActivationAPoZRankedFilterPruner(
        "apoz", "Filters", 0.5, ["0.weight"], activation_modules={"module.0": "2"}
    )
    masks = compute_masks(model, pruner, window_meta(model))
    assert len(pruned_filters(masks["0.weight"].mask)) == 4


def test_missing_statistics_say_how_to_collect_them() -> None:
    model = biased_block()
    pruner = ActivationAPoZRankedFilterPruner("apoz", "Filters", 0.5, ["features.weight"])
    with pytest.raises(ConfigError, match="SummaryActivationStatsCollector"):
        compute_masks(model, pruner, window_meta(model))
    collect(model, "mean_channels")  # the wrong statistic
    with pytest.raises(ConfigError, match="apoz_channels"):
        compute_masks(model, pruner, window_meta(model))


def test_statistics_of_another_layer_are_rejected() -> None:
    model = biased_block()
    collect(model, "apoz_channels")
    pruner = ActivationAPoZRankedFilterPruner(
        "apoz", "Filters", 0.5, ["features.weight"], activation_modules={"features": "head_act"}
    )
    with pytest.raises(ConfigError, match="another layer"):
        compute_masks(model, pruner, window_meta(model))


def test_agp_variant_follows_the_schedule() -> None:
    from distiller.pruning import ActivationAPoZRankedFilterPruner_AGP, agp_target

    model = biased_block()
    collect(model, "apoz_channels")
    pruner = ActivationAPoZRankedFilterPruner_AGP("apoz", 0.2, 0.6, "Filters", ["features.weight"])
    for epoch in (0, 10, 28):
        masks = compute_masks(model, pruner, window_meta(model, epoch))
        expected = int(agp_target(0.2, 0.6, epoch, 0, 30, 2) * 8)
        assert len(pruned_filters(masks["features.weight"].mask)) == expected
