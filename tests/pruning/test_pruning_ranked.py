"""Ranked structure pruners: Leader dependency, ε-greedy noise, group_size, rounding, never-all, groups."""

from __future__ import annotations

import math

import pytest
import torch
from pruning_helpers import compute_masks, conv_model, linear_model, params, window_meta
from torch import nn

from distiller.errors import ConfigError
from distiller.pruning import (
    BernoulliFilterPruner,
    GradientRankedFilterPruner,
    L1RankedStructureParameterPruner,
    build_pruner,
)
from distiller.sparsity import MaskSet


def twin_convs() -> nn.Sequential:
    """Two convs with 8 filters each (think: the two branches of a residual add)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))


def filter_map(mask: torch.Tensor) -> torch.Tensor:
    return mask.reshape(mask.shape[0], -1).amax(dim=1)


def l1(fraction: float, weights, group_type: str = "Filters", **kwargs) -> L1RankedStructureParameterPruner:
    return L1RankedStructureParameterPruner("p", group_type, fraction, weights, **kwargs)


def test_leader_dependency_gives_identical_maps_ranked_by_the_leader() -> None:
    model = twin_convs()
    # The leader is listed first but registered *after* the follower: its map must still rule.
    pruner = l1(0.5, ["2.weight", "0.weight", "4.weight"], group_dependency="Leader")
    masks = compute_masks(model, pruner, window_meta(model))
    maps = [filter_map(masks[n].mask) for n in ("0.weight", "2.weight", "4.weight")]
    assert torch.equal(maps[0], maps[1]) and torch.equal(maps[1], maps[2])
    alone = compute_masks(model, l1(0.5, ["2.weight"]), window_meta(model))
    assert torch.equal(maps[1], filter_map(alone["2.weight"].mask))
    assert int((maps[0] == 0).sum()) == 4


def test_leader_map_is_recomputed_every_round_not_only_when_the_target_changes() -> None:
    model = twin_convs()
    pruner = l1(0.5, ["0.weight", "2.weight"], group_dependency="Leader")
    first = filter_map(compute_masks(model, pruner, window_meta(model))["2.weight"].mask)
    with torch.no_grad():  # make the previously pruned filters of the leader the largest
        params(model)["0.weight"][first == 0] *= 100
    second = filter_map(compute_masks(model, pruner, window_meta(model))["2.weight"].mask)
    assert torch.equal(second, 1 - first)


def test_leader_with_a_different_structure_count_is_an_error() -> None:
    model = conv_model()  # 8 and 16 filters
    pruner = l1(0.5, ["0.weight", "3.weight"], group_dependency="Leader")
    with pytest.raises(ConfigError, match="same number of structures"):
        compute_masks(model, pruner, window_meta(model))


def test_noise_changes_the_ranking_but_keeps_the_count() -> None:
    model = twin_convs()
    clean = filter_map(compute_masks(model, l1(0.5, "2.weight"), window_meta(model))["2.weight"].mask)
    changed = False
    for seed in range(10):
        pruner = l1(0.5, "2.weight", noise=1.0)  # ε = 1: always perturb
        pruner.generator = torch.Generator().manual_seed(seed)
        noisy = filter_map(compute_masks(model, pruner, window_meta(model))["2.weight"].mask)
        assert int((noisy == 0).sum()) == 4
        changed |= not torch.equal(noisy, clean)
    assert changed


def test_group_size_prunes_adjacent_structures_together() -> None:
    model = twin_convs()
    masks = compute_masks(model, l1(0.5, "2.weight", "Channels", group_size=2), window_meta(model))
    channels = masks["2.weight"].mask.transpose(0, 1).reshape(8, -1).amax(dim=1)
    pairs = channels.reshape(4, 2)
    assert torch.equal(pairs[:, 0], pairs[:, 1])
    assert int((channels == 0).sum()) == 4
    with pytest.raises(ConfigError, match="group_size"):
        compute_masks(model, l1(0.5, "0.weight", "Channels", group_size=2), window_meta(model))  # 3 channels


@pytest.mark.parametrize(("rounding", "expected"), [(math.floor, 2), ("ceil", 3), ("round", 2)])
def test_rounding_fn(rounding, expected: int) -> None:
    model = twin_convs()
    masks = compute_masks(model, l1(0.3, "2.weight", rounding_fn=rounding), window_meta(model))
    assert int((filter_map(masks["2.weight"].mask) == 0).sum()) == expected


def test_never_prunes_every_structure_unless_asked_to() -> None:
    model = twin_convs()
    masks = compute_masks(model, l1(0.95, "2.weight", rounding_fn="ceil"), window_meta(model))
    assert int((filter_map(masks["2.weight"].mask) == 0).sum()) == 7
    masks = compute_masks(model, l1(1.0, "2.weight"), window_meta(model))
    assert int((filter_map(masks["2.weight"].mask) == 0).sum()) == 8


def test_a_fraction_too_small_for_one_structure_leaves_the_mask_alone() -> None:
    model = twin_convs()
    masks = MaskSet.for_model(model)
    previous = torch.ones_like(params(model)["2.weight"])
    masks["2.weight"].mask = previous
    compute_masks(model, l1(0.1, "2.weight"), window_meta(model), masks=masks)  # floor(0.8) == 0
    assert masks["2.weight"].mask is previous


def test_ties_prune_exactly_the_requested_count() -> None:
    model = twin_convs()
    with torch.no_grad():
        params(model)["2.weight"].fill_(0.5)
    masks = compute_masks(model, l1(0.5, "2.weight"), window_meta(model))
    assert int((filter_map(masks["2.weight"].mask) == 0).sum()) == 4


def test_filters_of_a_linear_weight_are_rows_and_blocks_take_any_shape() -> None:
    model = linear_model()
    masks = compute_masks(model, l1(0.25, "0.weight", "Filters"), window_meta(model))
    rows = masks["0.weight"].mask.amax(dim=1)
    assert int((rows == 0).sum()) == 8
    model = twin_convs()
    pruner = l1(0.5, "2.weight", "Blocks", kwargs={"block_shape": [1, 1, 3, 1]})  # kernel columns
    mask = compute_masks(model, pruner, window_meta(model))["2.weight"].mask
    columns = mask.permute(0, 1, 3, 2).reshape(-1, 3)
    assert torch.equal(columns.amin(dim=1), columns.amax(dim=1))
    assert int((columns[:, 0] == 0).sum()) == columns.shape[0] // 2


def test_bad_configurations_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="Filters"):
        GradientRankedFilterPruner("g", "Channels", 0.5, ["w"])
    with pytest.raises(ConfigError, match="Leader"):
        l1(0.5, "w", group_dependency="Follower")
    with pytest.raises(ConfigError, match="block_shape"):
        l1(0.5, "w", "Blocks")
    with pytest.raises(ConfigError, match="desired_sparsity"):
        l1(1.5, "w")
    with pytest.raises(ConfigError, match="rounding_fn"):
        l1(0.5, "w", rounding_fn="up")
    with pytest.raises(ConfigError, match="weights"):
        l1(0.5, [])


def test_gradient_ranking_waits_for_a_gradient() -> None:
    model = twin_convs()
    masks = compute_masks(model, GradientRankedFilterPruner("g", "Filters", 0.5, "2.weight"), window_meta(model))
    assert masks["2.weight"].mask is None
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    w = params(model)["2.weight"]
    masks = compute_masks(model, GradientRankedFilterPruner("g", "Filters", 0.5, "2.weight"), window_meta(model))
    taylor = (w.grad * w).reshape(8, -1).sum(dim=1).abs()
    kept = filter_map(masks["2.weight"].mask).bool()
    assert taylor[kept].min() >= taylor[~kept].max()


def test_bernoulli_keeps_at_least_one_filter() -> None:
    model = twin_convs()
    pruner = BernoulliFilterPruner("b", "Filters", 0.999, "2.weight")
    for seed in range(5):
        pruner.generator = torch.Generator().manual_seed(seed)
        mask = compute_masks(model, pruner, window_meta(model))["2.weight"].mask
        assert torch.isfinite(mask).all() and (mask != 0).any()


def test_weights_accept_a_single_string_and_dataparallel_names() -> None:
    model = twin_convs()
    for weights in ("module.2.weight", ["2.weight"], "2.weight"):
        pruner = build_pruner(
            {
                "class": "L1RankedStructureParameterPruner",
                "group_type": "Filters",
                "desired_sparsity": 0.5,
                "weights": weights,
            }
        )
        masks = MaskSet.for_model(model)
        # A DataParallel model reports `module.`-prefixed names to the pruner.
        pruner.set_param_mask(params(model)["2.weight"], "module.2.weight", masks, window_meta(model))
        assert masks["2.weight"].mask is not None
        assert masks["0.weight"].mask is None
