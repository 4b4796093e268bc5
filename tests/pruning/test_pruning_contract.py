"""The contract every registered pruner keeps (DESIGN §6 "contract tests").

For each built-in pruner, on a small conv or linear model:

* the target (sparsity level, threshold, structure count) is met exactly where the algorithm
  defines it, and structured pruners zero whole structures of their group;
* hard masks survive SGD with momentum and weight decay when re-applied after each step
  (``MaskSet.apply(is_forward=False)``, what the scheduler's ``on_minibatch_end`` does), and soft
  masks (``mask_on_forward_only``) do not;
* double copies keep the unmasked values;
* masks and pruner state round-trip through ``save_checkpoint``/``load_checkpoint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from pruning_helpers import MODELS, batch, compute_masks, params, window_meta
from torch import nn
from torch.nn import functional as F

from distiller.analysis import SummaryActivationStatsCollector
from distiller.checkpoint import load_checkpoint, save_checkpoint
from distiller.pruning import PRUNERS, agp_target, baidu_threshold, build_pruner
from distiller.sparsity import MaskSet, granularity_from_name
from distiller.sparsity.granularity import NM


@dataclass
class Ctx:
    model: nn.Module
    pruner: Any
    masks: MaskSet
    dense: dict[str, torch.Tensor]
    meta: dict[str, Any]
    kind: str
    args: dict[str, Any]


@dataclass
class Case:
    cls: str
    kind: str  # "conv" or "linear"
    args: dict[str, Any] | Callable[[nn.Module], dict[str, Any]]
    check: Callable[[Ctx], None]
    epoch: int = 0
    setup: Callable[[nn.Module, Any], None] | None = None
    deterministic: bool = True  # re-running on the pruned, reloaded model gives the same masks
    reconstructs: bool = False  # the pruner rewrites the kept weights


# --- checks -------------------------------------------------------------------------------------


def level(levels: dict[str, float]) -> Callable[[Ctx], None]:
    """Exactly round(level * numel) zeros in each listed mask."""

    def check(ctx: Ctx) -> None:
        for name, sparsity in levels.items():
            mask = ctx.masks[name].mask
            assert mask is not None, name
            assert int((mask == 0).sum()) == round(sparsity * mask.numel()), name

    return check


def threshold(thresholds: Callable[[Ctx], dict[str, float]], strict_keep: bool = True) -> Callable[[Ctx], None]:
    """Pruned exactly where |w| is at most (below, if not strict_keep) the threshold."""

    def check(ctx: Ctx) -> None:
        for name, thr in thresholds(ctx).items():
            mask, w = ctx.masks[name].mask, ctx.dense[name].abs()
            assert mask is not None, name
            keep = w > thr if strict_keep else w >= thr
            assert torch.equal(mask.bool(), keep), name
            assert 0 < int((mask == 0).sum()) < mask.numel(), f"{name}: the test threshold prunes nothing or all"

    return check


def zero_structures(mask: torch.Tensor, group_type: str, **kwargs: Any) -> int:
    """Number of all-zero structures; asserts every structure is all-zero or all-nonzero."""
    rows = granularity_from_name(group_type, **kwargs).group_view(mask)
    zero = rows == 0
    assert torch.equal(zero.all(dim=1), zero.any(dim=1)), f"partial {group_type} structures"
    return int(zero.all(dim=1).sum())


def structures(expected: dict[str, tuple[str, int | tuple[int, int]]], **kwargs: Any) -> Callable[[Ctx], None]:
    """Whole structures of ``group_type`` zeroed; their count is n (or within [lo, hi])."""

    def check(ctx: Ctx) -> None:
        for name, (group_type, count) in expected.items():
            mask = ctx.masks[name].mask
            assert mask is not None, name
            n = zero_structures(mask, group_type, **kwargs)
            if isinstance(count, tuple):
                assert count[0] <= n <= count[1], (name, n, count)
            else:
                assert n == count, (name, n, count)

    return check


def agp_structures(names: list[str], group_type: str, epoch: int, n_structs: dict[str, int]) -> Callable[[Ctx], None]:
    target = agp_target(0.1, 0.6, epoch, 0, 30, 2)
    return structures({n: (group_type, math.floor(target * n_structs[n])) for n in names})


def check_bernoulli(ctx: Ctx) -> None:
    mask = ctx.masks["0.weight"].mask
    n_zero = zero_structures(mask, "Filters")
    kept = mask.shape[0] - n_zero
    assert kept > 0
    scale = mask.shape[0] / kept
    assert torch.allclose(mask[mask != 0], torch.full_like(mask[mask != 0], scale))


def check_nm(ctx: Ctx) -> None:
    for name in ("3.weight", "7.weight"):
        groups = NM(2, 4).group_view(ctx.masks[name].mask)
        assert torch.equal(groups.sum(dim=1), torch.full((groups.shape[0],), 2.0)), name


def check_global(ctx: Ctx) -> None:
    names = ["3.weight", "7.weight"]
    masks = [ctx.masks[n].mask for n in names]
    total = sum(m.numel() for m in masks)
    assert sum(int((m == 0).sum()) for m in masks) == round(0.5 * total)
    pruned = torch.cat([ctx.dense[n].abs()[m == 0] for n, m in zip(names, masks)])
    kept = torch.cat([ctx.dense[n].abs()[m != 0] for n, m in zip(names, masks)])
    assert pruned.max() <= kept.min()


def check_splicing(ctx: Ctx) -> None:
    for name in ("0.weight", "2.weight"):
        w = ctx.dense[name].abs()
        low = (w.mean() + 0.3 * w.std()) * 0.9
        assert torch.equal(ctx.masks[name].mask.bool(), w >= low), name


def mean_abs_threshold(model: nn.Module) -> dict[str, Any]:
    """Thresholds at the median structure norm, so some structures fall on each side."""
    w3 = params(model)["3.weight"].detach()
    w7 = params(model)["7.weight"].detach()
    thr3 = w3.abs().reshape(16, -1).mean(dim=1).median().item()
    thr7 = w7.abs().mean(dim=1).median().item()
    return {"reg_regims": {"3.weight": [thr3, "Filters"], "7.weight": [thr7, "Rows"]}, "threshold_criteria": "Mean_Abs"}


def check_structure_threshold(ctx: Ctx) -> None:
    regims = ctx.pruner.reg_regims
    norms3 = ctx.dense["3.weight"].abs().reshape(16, -1).mean(dim=1)
    norms7 = ctx.dense["7.weight"].abs().mean(dim=1)
    assert zero_structures(ctx.masks["3.weight"].mask, "Filters") == int((norms3 <= regims["3.weight"][0]).sum())
    assert zero_structures(ctx.masks["7.weight"].mask, "Rows") == int((norms7 <= regims["7.weight"][0]).sum())


# --- setups -------------------------------------------------------------------------------------


def collect_activations(stat: str) -> Callable[[nn.Module, Any], None]:
    def setup(model: nn.Module, pruner: Any) -> None:
        with SummaryActivationStatsCollector(model, stat), torch.no_grad():
            for seed in range(3):
                model(batch("conv", seed=seed)[0])

    return setup


def backward(model: nn.Module, pruner: Any) -> None:
    x, y = batch("conv")
    F.cross_entropy(model(x), y).backward()


def feature_maps(model: nn.Module, pruner: Any) -> None:
    pruner.collect_feature_maps(model, [batch("conv", seed=s) for s in range(4)], n_points_per_fm=8)


# --- the cases ----------------------------------------------------------------------------------

CONV_FILTERS = {"0.weight": 8, "3.weight": 16}
AGP = {"initial_sparsity": 0.1, "final_sparsity": 0.6}
FILTERS_CONV = {"group_type": "Filters", "weights": ["0.weight", "3.weight"]}

CASES: dict[str, Case] = {
    "MagnitudeParameterPruner": Case(
        "MagnitudeParameterPruner",
        "linear",
        {"thresholds": {"*": 0.05, "2.weight": 0.1}},
        threshold(lambda ctx: {"0.weight": 0.05, "0.bias": 0.05, "2.weight": 0.1}),
    ),
    "SparsityLevelParameterPruner": Case(
        "SparsityLevelParameterPruner",
        "conv",
        {"levels": {"3.weight": 0.5, "*": 0.25}},
        level({"3.weight": 0.5, "0.weight": 0.25, "1.weight": 0.25, "7.weight": 0.25}),
    ),
    "SensitivityPruner": Case(
        "SensitivityPruner",
        "linear",
        {"sensitivities": {"0.weight": 0.5, "module.2.weight": 1.0}},
        threshold(
            lambda ctx: {
                "0.weight": 0.5 * ctx.dense["0.weight"].std().item(),
                "2.weight": ctx.dense["2.weight"].std().item(),
            }
        ),
    ),
    "AutomatedGradualPruner": Case(
        "AutomatedGradualPruner",
        "conv",
        {**AGP, "weights": ["0.weight", "3.weight"]},
        level({"0.weight": agp_target(0.1, 0.6, 10, 0, 30, 2), "3.weight": agp_target(0.1, 0.6, 10, 0, 30, 2)}),
        epoch=10,
    ),
    "SplicingPruner": Case(
        "SplicingPruner",
        "linear",
        {"sensitivities": {"0.weight": 0.3, "2.weight": 0.3}, "low_thresh_mult": 0.9, "hi_thresh_mult": 1.1},
        check_splicing,
    ),
    "BaiduRNNPruner": Case(
        "BaiduRNNPruner",
        "linear",
        {"q": 0.1, "ramp_epoch_offset": 3, "ramp_slope_mult": 2, "weights": ["0.weight", "2.weight"]},
        threshold(lambda ctx: dict.fromkeys(["0.weight", "2.weight"], baidu_threshold(0.1, 3, 2, 10, 0, 30, 2))),
        epoch=10,
    ),
    "StructureParameterPruner": Case("StructureParameterPruner", "conv", mean_abs_threshold, check_structure_threshold),
    "LpRankedStructureParameterPruner": Case(
        "LpRankedStructureParameterPruner",
        "conv",
        {**FILTERS_CONV, "desired_sparsity": 0.5, "magnitude_fn": "L2"},
        structures({"0.weight": ("Filters", 4), "3.weight": ("Filters", 8)}),
    ),
    "L1RankedStructureParameterPruner": Case(
        "L1RankedStructureParameterPruner",
        "linear",
        {"group_type": "Rows", "desired_sparsity": 0.5, "weights": ["0.weight", "2.weight"]},
        # The original's "Rows" of a PyTorch (out, in) weight are its columns (input features).
        structures({"0.weight": ("Cols", 8), "2.weight": ("Cols", 16)}),
    ),
    "L2RankedStructureParameterPruner": Case(
        "L2RankedStructureParameterPruner",
        "conv",
        {
            "group_type": "Blocks",
            "desired_sparsity": 0.5,
            "weights": "3.weight",
            "kwargs": {"block_shape": [1, 4, 1, 1]},
        },
        structures({"3.weight": ("Blocks", 288 // 2)}, block_shape=[1, 4, 1, 1]),
    ),
    "RandomLevelStructureParameterPruner": Case(
        "RandomLevelStructureParameterPruner",
        "conv",
        {**FILTERS_CONV, "sparsity_range": [0.25, 0.5]},
        structures({"0.weight": ("Filters", (2, 4)), "3.weight": ("Filters", (4, 8))}),
        deterministic=False,
    ),
    "ActivationAPoZRankedFilterPruner": Case(
        "ActivationAPoZRankedFilterPruner",
        "conv",
        {**FILTERS_CONV, "desired_sparsity": 0.5},
        structures({"0.weight": ("Filters", 4), "3.weight": ("Filters", 8)}),
        setup=collect_activations("apoz_channels"),
        deterministic=False,
    ),
    "ActivationMeanRankedFilterPruner": Case(
        "ActivationMeanRankedFilterPruner",
        "conv",
        {**FILTERS_CONV, "desired_sparsity": 0.25},
        structures({"0.weight": ("Filters", 2), "3.weight": ("Filters", 4)}),
        setup=collect_activations("mean_channels"),
        deterministic=False,
    ),
    "GradientRankedFilterPruner": Case(
        "GradientRankedFilterPruner",
        "conv",
        {**FILTERS_CONV, "desired_sparsity": 0.5},
        structures({"0.weight": ("Filters", 4), "3.weight": ("Filters", 8)}),
        setup=backward,
        deterministic=False,
    ),
    "RandomRankedFilterPruner": Case(
        "RandomRankedFilterPruner",
        "conv",
        {**FILTERS_CONV, "desired_sparsity": 0.5},
        structures({"0.weight": ("Filters", 4), "3.weight": ("Filters", 8)}),
        deterministic=False,
    ),
    "BernoulliFilterPruner": Case(
        "BernoulliFilterPruner",
        "conv",
        {"group_type": "3D", "desired_sparsity": 0.5, "weights": "0.weight"},
        check_bernoulli,
        deterministic=False,
    ),
    "FMReconstructionChannelPruner": Case(
        "FMReconstructionChannelPruner",
        "conv",
        {"group_type": "Channels", "desired_sparsity": 0.5, "weights": ["3.weight", "7.weight"]},
        structures({"3.weight": ("Channels", 4), "7.weight": ("Channels", 8)}),
        setup=feature_maps,
        deterministic=False,
        reconstructs=True,
    ),
    "L1RankedStructureParameterPruner_AGP": Case(
        "L1RankedStructureParameterPruner_AGP",
        "conv",
        {**AGP, **FILTERS_CONV},
        agp_structures(["0.weight", "3.weight"], "Filters", 14, CONV_FILTERS),
        epoch=14,
    ),
    "L2RankedStructureParameterPruner_AGP": Case(
        "L2RankedStructureParameterPruner_AGP",
        "conv",
        {**AGP, "group_type": "Channels", "weights": ["3.weight"]},
        agp_structures(["3.weight"], "Channels", 28, {"3.weight": 8}),
        epoch=28,
    ),
    "ActivationAPoZRankedFilterPruner_AGP": Case(
        "ActivationAPoZRankedFilterPruner_AGP",
        "conv",
        {**AGP, **FILTERS_CONV},
        agp_structures(["0.weight", "3.weight"], "Filters", 20, CONV_FILTERS),
        epoch=20,
        setup=collect_activations("apoz_channels"),
        deterministic=False,
    ),
    "ActivationMeanRankedFilterPruner_AGP": Case(
        "ActivationMeanRankedFilterPruner_AGP",
        "conv",
        {**AGP, **FILTERS_CONV},
        agp_structures(["0.weight", "3.weight"], "Filters", 20, CONV_FILTERS),
        epoch=20,
        setup=collect_activations("mean_channels"),
        deterministic=False,
    ),
    "GradientRankedFilterPruner_AGP": Case(
        "GradientRankedFilterPruner_AGP",
        "conv",
        {**AGP, **FILTERS_CONV},
        agp_structures(["0.weight", "3.weight"], "Filters", 28, CONV_FILTERS),
        epoch=28,
        setup=backward,
        deterministic=False,
    ),
    "RandomRankedFilterPruner_AGP": Case(
        "RandomRankedFilterPruner_AGP",
        "conv",
        {**AGP, **FILTERS_CONV},
        agp_structures(["0.weight", "3.weight"], "Filters", 28, CONV_FILTERS),
        epoch=28,
        deterministic=False,
    ),
    "BernoulliFilterPruner_AGP": Case(
        "BernoulliFilterPruner_AGP",
        "conv",
        {**AGP, "group_type": "Filters", "weights": ["0.weight"]},
        check_bernoulli,
        epoch=28,
        deterministic=False,
    ),
    "NMPruner": Case("NMPruner", "conv", {"n": 2, "m": 4, "weights": ["3.weight", "7.weight"]}, check_nm),
    "GlobalMagnitudePruner": Case(
        "GlobalMagnitudePruner", "conv", {"sparsity": 0.5, "weights": ["3.weight", "7.weight"]}, check_global
    ),
}

BUILTIN = sorted(n for n, cls in PRUNERS.items() if cls.__module__.startswith("distiller.pruning."))


def test_every_builtin_pruner_has_a_contract_case() -> None:
    assert sorted(CASES) == BUILTIN
    assert len(BUILTIN) == 26  # the original's 24 pruner classes + NMPruner + GlobalMagnitudePruner


def run(case: Case) -> Ctx:
    torch.manual_seed(0)
    model = MODELS[case.kind]()
    args = case.args(model) if callable(case.args) else dict(case.args)
    pruner = build_pruner({"class": case.cls, "name": "p", **args}, model)
    if case.setup is not None:
        case.setup(model, pruner)
    dense = {n: p.detach().clone() for n, p in params(model).items()}
    meta = window_meta(model, case.epoch)
    masks = compute_masks(model, pruner, meta)
    return Ctx(model, pruner, masks, dense, meta, case.kind, args)


def masked_params(ctx: Ctx) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {name: (p, ctx.masks[name].mask) for name, p in params(ctx.model).items() if ctx.masks[name].mask is not None}
    assert out, "the pruner set no mask"
    return out


def sgd_steps(ctx: Ctx, steps: int = 5, **opt: float) -> None:
    """Train like the scheduler's loop: mask before forward, re-mask (skipping forward-only) after the step."""
    optimizer = torch.optim.SGD(ctx.model.parameters(), **{"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-2, **opt})
    x, y = batch(ctx.kind, seed=7)
    for _ in range(steps):
        ctx.masks.apply(ctx.model, is_forward=True)
        optimizer.zero_grad()
        F.cross_entropy(ctx.model(x), y).backward()
        ctx.masks.revert_weights(ctx.model)
        optimizer.step()
        ctx.masks.apply(ctx.model, is_forward=False)


@pytest.mark.parametrize("name", BUILTIN)
def test_target_is_met(name: str) -> None:
    ctx = run(CASES[name])
    for _, (param, mask) in masked_params(ctx).items():
        assert mask.shape == param.shape and mask.dtype == param.dtype
    CASES[name].check(ctx)


@pytest.mark.parametrize("name", BUILTIN)
def test_hard_masks_survive_momentum_and_weight_decay(name: str) -> None:
    ctx = run(CASES[name])
    sgd_steps(ctx)
    for pname, (param, mask) in masked_params(ctx).items():
        assert torch.all(param.detach()[mask == 0] == 0), pname


@pytest.mark.parametrize("name", BUILTIN)
def test_soft_masks_let_weights_revive(name: str) -> None:
    ctx = run(CASES[name])
    for masker in ctx.masks.values():
        masker.mask_on_forward_only = True
    sgd_steps(ctx)
    revived = [bool((param.detach()[mask == 0] != 0).any()) for param, mask in masked_params(ctx).values()]
    assert any(revived)


@pytest.mark.parametrize("name", BUILTIN)
def test_double_copies_keep_unmasked_values(name: str) -> None:
    ctx = run(CASES[name])
    before = {n: p.detach().clone() for n, p in params(ctx.model).items()}
    for masker in ctx.masks.values():
        masker.use_double_copies = True
    ctx.masks.apply(ctx.model, is_forward=True)
    for pname, (param, mask) in masked_params(ctx).items():
        assert torch.equal(param.detach(), before[pname] * mask), pname
    x, y = batch(ctx.kind, seed=3)
    F.cross_entropy(ctx.model(x), y).backward()
    grads = {n: p.grad.clone() for n, p in params(ctx.model).items()}
    ctx.masks.revert_weights(ctx.model)
    for pname, (param, _) in masked_params(ctx).items():
        assert torch.equal(param.detach(), before[pname]), pname
    torch.optim.SGD(ctx.model.parameters(), lr=0.1).step()
    for pname, (param, _) in masked_params(ctx).items():
        # The update computed on the masked weights lands on the unmasked copy: W1 = W0 - lr * dW.
        assert torch.allclose(param.detach(), before[pname] - 0.1 * grads[pname]), pname


@pytest.mark.parametrize("name", BUILTIN)
def test_state_round_trips_through_a_checkpoint(name: str, tmp_path) -> None:
    case = CASES[name]
    ctx = run(case)
    ctx.masks.apply(ctx.model, is_forward=True)
    state = {**ctx.masks.state_dict(), "pruners": {"p": ctx.pruner.state_dict()}}
    save_checkpoint(tmp_path, model=ctx.model, arch=None, dataset=None, epoch=3, scheduler_state=state)

    torch.manual_seed(123)  # a different dense init: everything must come from the file
    model = MODELS[case.kind]()
    loaded = load_checkpoint(tmp_path / "checkpoint.pth.tar", model)
    masks = MaskSet.for_model(model)
    masks.load_state_dict(loaded.scheduler_state)
    for pname, masker in ctx.masks.items():
        if masker.mask is None:
            assert masks[pname].mask is None
        else:
            assert torch.equal(masks[pname].mask, masker.mask), pname

    pruner = build_pruner({"class": case.cls, "name": "p", **ctx.args}, model)
    pruner.load_state_dict(loaded.scheduler_state["pruners"]["p"])
    assert repr(pruner.state_dict()) == repr(ctx.pruner.state_dict())
    if case.deterministic:
        # The restored pruner, run on the restored (pruned) model, reproduces the saved masks.
        again = compute_masks(model, pruner, window_meta(model, case.epoch), masks=masks)
        for pname, masker in ctx.masks.items():
            if masker.mask is not None:
                assert torch.equal(again[pname].mask, masker.mask), pname
