"""Element-wise pruners: N:M, global magnitude, sensitivity, splicing, magnitude and level pruners."""

from __future__ import annotations

import pytest
import torch
from pruning_helpers import compute_masks, conv_model, linear_model, params, window_meta

from distiller.errors import ConfigError
from distiller.pruning import (
    BaiduRNNPruner,
    GlobalMagnitudePruner,
    MagnitudeParameterPruner,
    NMPruner,
    SensitivityPruner,
    SparsityLevelParameterPruner,
    SplicingPruner,
    prune,
)
from distiller.sparsity import MaskSet


def test_nm_pruner_keeps_the_two_largest_of_every_four_along_the_input_dimension() -> None:
    model = conv_model()
    dense = params(model)["3.weight"].detach().clone()
    masks = prune(model, NMPruner("nm", 2, 4, ["3.weight", "7.weight"]))
    mask = masks["3.weight"].mask
    w = dense
    # Conv (16, 8, 3, 3): groups of 4 input channels at each (out, kh, kw) position.
    groups = mask.permute(0, 2, 3, 1).reshape(-1, 2, 4)
    assert torch.equal(groups.sum(dim=-1), torch.full(groups.shape[:-1], 2.0))
    kept = (w.abs().permute(0, 2, 3, 1).reshape(-1, 4) * groups.reshape(-1, 4)).sum(-1)
    assert torch.allclose(kept, w.abs().permute(0, 2, 3, 1).reshape(-1, 4).topk(2, dim=-1).values.sum(-1))
    rows = masks["7.weight"].mask.reshape(8, 4, 4)
    assert torch.equal(rows.sum(dim=-1), torch.full((8, 4), 2.0))
    assert float((mask == 0).float().mean()) == 0.5


def test_nm_pruner_rejects_layers_it_cannot_group() -> None:
    model = conv_model()  # 0.weight has 3 input channels
    with pytest.raises(ConfigError, match="multiple of 4"):
        prune(model, NMPruner("nm", 2, 4, "0.weight"))
    with pytest.raises(ConfigError):
        NMPruner("nm", 5, 4, "0.weight")


def test_global_magnitude_shares_one_threshold_across_tensors() -> None:
    model = linear_model()
    with torch.no_grad():
        params(model)["2.weight"].mul_(10)  # a layer of large weights loses little
    pruner = GlobalMagnitudePruner("g", 0.5, ["0.weight", "2.weight"])
    thr = pruner.threshold(model)
    dense = {n: p.detach().clone() for n, p in params(model).items()}
    masks = prune(model, pruner)
    total = sum(params(model)[n].numel() for n in ("0.weight", "2.weight"))
    zeros = {n: int((masks[n].mask == 0).sum()) for n in ("0.weight", "2.weight")}
    assert sum(zeros.values()) == round(0.5 * total)
    for n in ("0.weight", "2.weight"):
        assert torch.equal(masks[n].mask.bool(), dense[n].abs() > thr)
    assert zeros["0.weight"] / 512 > 0.5 > zeros["2.weight"] / 256


def test_global_magnitude_needs_the_model() -> None:
    model = linear_model()
    pruner = GlobalMagnitudePruner("g", 0.5, ["0.weight", "2.weight"])
    masks = MaskSet.for_model(model)
    with pytest.raises(ConfigError, match="meta\\['model'\\]"):
        pruner.set_param_mask(params(model)["0.weight"], "0.weight", masks, {"current_epoch": 0})


def test_sensitivity_measures_the_std_once() -> None:
    model = linear_model()
    pruner = SensitivityPruner("s", {"*": 1.0})
    dense = params(model)["0.weight"].detach().clone()
    first = prune(model, pruner)["0.weight"].mask
    std = dense.std().item()
    assert torch.equal(first.bool(), dense.abs() > std)
    assert pruner.state_dict()["stds"]["0.weight"] == pytest.approx(std)
    # The pruned tensor has a smaller std; the threshold must not move with it.
    again = prune(model, pruner)["0.weight"].mask
    assert torch.equal(again, first)


def test_splicing_restores_weights_that_grow_back() -> None:
    model = linear_model()
    pruner = SplicingPruner("dns", {"0.weight": 0.0}, low_thresh_mult=0.9, hi_thresh_mult=1.1)
    masks = compute_masks(model, pruner, window_meta(model))
    w = params(model)["0.weight"]
    pruned = (masks["0.weight"].mask == 0).nonzero()[0].tolist()
    with torch.no_grad():
        w[tuple(pruned)] = 10.0  # grows far above the high threshold
    masks = compute_masks(model, pruner, window_meta(model), masks=masks)
    assert masks["0.weight"].mask[tuple(pruned)] == 1
    mean = pruner.state_dict()["stats"]["0.weight"][0]
    with torch.no_grad():
        w[tuple(pruned)] = mean  # between the thresholds: keeps its previous (kept) state
    masks = compute_masks(model, pruner, window_meta(model), masks=masks)
    assert masks["0.weight"].mask[tuple(pruned)] == 1


def test_splicing_sensitivity_grows_per_epoch() -> None:
    model = linear_model()
    pruner = SplicingPruner("dns", {"*": 0.2}, 0.9, 1.1, sensitivity_multiplier=0.5)
    early = compute_masks(model, pruner, window_meta(model, epoch=0))["0.weight"].mask
    late = compute_masks(model, pruner, window_meta(model, epoch=10))["0.weight"].mask
    assert (late == 0).sum() > (early == 0).sum()


def test_magnitude_pruner_needs_a_default_threshold() -> None:
    with pytest.raises(ConfigError, match="'\\*'"):
        MagnitudeParameterPruner("m", {"conv1.weight": 0.1})


def test_level_pruner_levels_can_be_replaced_and_zero_leaves_the_mask() -> None:
    model = conv_model()
    pruner = SparsityLevelParameterPruner("l", {"3.weight": 0.5})
    assert pruner.validate(model) is None
    pruner.levels = {"3.weight": 0.0}  # a PruningPolicy's `levels` argument overrides the pruner's
    assert compute_masks(model, pruner, window_meta(model))["3.weight"].mask is None
    with pytest.raises(ConfigError):
        pruner.levels = {"3.weight": 1.5}
    with pytest.raises(ConfigError, match="3.wieght"):
        SparsityLevelParameterPruner("l", {"3.wieght": 0.5}).validate(model)


def test_baidu_threshold_rises_over_the_window() -> None:
    model = linear_model()
    pruner = BaiduRNNPruner("b", q=0.15, ramp_epoch_offset=3, ramp_slope_mult=2, weights="0.weight")
    sparsity = []
    for epoch in (0, 5, 10, 19):
        mask = compute_masks(model, pruner, window_meta(model, epoch, 0, 20, 1))["0.weight"].mask
        sparsity.append(float((mask == 0).float().mean()))
    assert sparsity == sorted(sparsity) and sparsity[-1] > sparsity[0]
