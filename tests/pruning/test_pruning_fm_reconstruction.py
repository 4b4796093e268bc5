"""Feature-map reconstruction re-fits the kept weights and beats plain channel pruning."""

from __future__ import annotations

import copy

import pytest
import torch
from pruning_helpers import params
from torch import nn

from distiller.errors import ConfigError
from distiller.pruning import (
    FMReconstructionChannelPruner,
    L1RankedStructureParameterPruner,
    collect_feature_maps,
    prune,
)


def data(kind: str, n_batches: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (8, 4, 8, 8) if kind == "conv" else (32, 16)
    return [torch.randn(*shape, generator=g) for _ in range(n_batches)]


def conv_net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 6, 3, padding=1))


def linear_net() -> nn.Sequential:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def layer_error(pruned: nn.Module, dense: nn.Module, batches: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(float((pruned(x) - dense(x)).pow(2).mean()) for x in batches) / len(batches)


@pytest.mark.parametrize(("kind", "build"), [("conv", conv_net), ("linear", linear_net)])
def test_reconstruction_error_is_lower_than_plain_channel_pruning(kind: str, build) -> None:
    torch.manual_seed(0)
    dense = build()
    plain, refit = copy.deepcopy(dense), copy.deepcopy(dense)
    prune(plain, L1RankedStructureParameterPruner("l1", "Channels", 0.5, "2.weight"))

    pruner = FMReconstructionChannelPruner("fm", "Channels", 0.5, "2.weight")
    pruner.collect_feature_maps(refit, data(kind, 4, seed=1), n_points_per_fm=16)
    masks = prune(refit, pruner)

    # Same channels pruned (both rank by L1 of the dense weights), only the kept weights differ.
    plain_map = (params(plain)["2.weight"] != 0).transpose(0, 1).reshape(params(plain)["2.weight"].shape[1], -1).any(1)
    assert torch.equal(masks["2.weight"].mask.transpose(0, 1).reshape(plain_map.numel(), -1).amax(1).bool(), plain_map)
    held_out = data(kind, 3, seed=2)
    plain_err, refit_err = layer_error(plain, dense, held_out), layer_error(refit, dense, held_out)
    assert refit_err < 0.8 * plain_err, (refit_err, plain_err)


def test_feature_maps_can_be_passed_in_and_are_checked() -> None:
    net = conv_net()
    fms = collect_feature_maps(net, [(x, None) for x in data("conv", 2, seed=3)], ["module.2"], max_batches=1)
    assert fms["2"].inputs.shape == (8 * 10, 8, 9) and fms["2"].outputs.shape == (8 * 10, 6)
    masks = prune(net, FMReconstructionChannelPruner("fm", "Channels", 0.25, "2.weight", feature_maps=fms))
    assert masks["2.weight"].mask is not None
    with pytest.raises(ConfigError, match="collect_feature_maps"):
        prune(conv_net(), FMReconstructionChannelPruner("fm", "Channels", 0.5, "2.weight"))


def test_unsupported_layers_and_options_are_rejected() -> None:
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2))
    with pytest.raises(ConfigError, match="ungrouped"):
        collect_feature_maps(grouped, data("conv", 1, seed=0), ["0"])
    with pytest.raises(ConfigError, match="group_dependency"):
        FMReconstructionChannelPruner("fm", "Channels", 0.5, ["a.weight", "b.weight"], group_dependency="Leader")
    with pytest.raises(ConfigError, match="Channels"):
        FMReconstructionChannelPruner("fm", "Filters", 0.5, "a.weight")
