"""Pure mask functions: exact counts (ties included), bottom-k structures, N:M patterns."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distiller.errors import ConfigError
from distiller.sparsity import metrics
from distiller.sparsity.criteria import (
    bottom_k_keep_map,
    level_mask,
    nm_mask,
    num_structs_to_prune,
    sensitivity_mask,
    structure_level_binary_map,
    structure_level_mask,
    structure_threshold_mask,
    threshold_mask,
)
from distiller.sparsity.granularity import Blocks, Channels, Filters


def _zeros(mask: torch.Tensor) -> int:
    return int((mask == 0).sum())


def test_threshold_mask_keeps_strictly_above():
    t = torch.tensor([-0.5, 0.2, 0.3, -0.31, 0.0])
    assert threshold_mask(t, 0.3).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert threshold_mask(t.double(), 0.3).dtype == torch.float64


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.999, 1.0])
def test_level_mask_exact_even_when_everything_ties(sparsity):
    t = torch.ones(3, 64, 8, 8)  # the original's documented failure case
    mask = level_mask(t, sparsity)
    assert _zeros(mask) == round(sparsity * t.numel())


def test_level_mask_prunes_smallest_and_breaks_ties_by_position():
    t = torch.tensor([3.0, -1.0, 1.0, 2.0, 1.0, -5.0])
    assert level_mask(t, 0.5).tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    assert level_mask(t, 2 / 6).tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    sparsity=st.floats(0.0, 1.0),
    levels=st.integers(1, 5),
    seed=st.integers(0, 2**16),
)
def test_level_mask_count_property(n, sparsity, levels, seed):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(0, levels, (n,), generator=g).float()  # many ties
    mask = level_mask(t, sparsity)
    k = round(sparsity * n)
    assert _zeros(mask) == k
    if 0 < k < n:  # every pruned magnitude <= every kept magnitude
        assert t[mask == 0].abs().max() <= t[mask == 1].abs().min()


def test_level_mask_rejects_bad_fractions():
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ConfigError, match="fraction"):
            level_mask(torch.ones(4), bad)


def test_sensitivity_mask_is_s_times_std():
    t = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    mask = sensitivity_mask(t, 1.0)
    # For normal data, |w| <= std holds for ~68.27% of the values.
    assert metrics.sparsity(mask) == pytest.approx(0.6827, abs=0.005)
    fixed = sensitivity_mask(t * 0.1, 1.0, std=t.std().item())  # a std measured earlier
    assert metrics.sparsity(fixed) > 0.99


def test_num_structs_to_prune():
    assert num_structs_to_prune(10, 1, 0.35, math.floor) == 3
    assert num_structs_to_prune(10, 1, 0.35, math.ceil) == 4
    assert num_structs_to_prune(10, 1, 0.99, math.ceil) == 9  # never all of them...
    assert num_structs_to_prune(10, 1, 1.0, math.floor) == 10  # ...unless asked for exactly
    assert num_structs_to_prune(16, 4, 0.6, math.floor) == 8
    assert num_structs_to_prune(16, 4, 0.99, math.ceil) == 12
    assert num_structs_to_prune(10, 1, 0.0, math.floor) == 0


def test_structure_level_mask_prunes_smallest_filters():
    t = torch.ones(6, 2, 3, 3) * torch.tensor([5.0, 1.0, 4.0, 2.0, 6.0, 3.0]).view(6, 1, 1, 1)
    mask = structure_level_mask(t, 0.5, "Filters")
    assert mask.flatten(1).amax(1).tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert mask.shape == t.shape


def test_structure_level_mask_exact_with_tied_structures():
    t = torch.ones(8, 4, 3, 3)
    mask = structure_level_mask(t, 0.5, "Channels")
    assert int((Channels().group_view(mask).amax(1) == 0).sum()) == 2
    assert structure_level_binary_map(t, 0.5, Filters()).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_structure_level_mask_never_prunes_everything_unless_fraction_one():
    t = torch.randn(4, 3, 3, 3)
    near = structure_level_mask(t, 0.99, "Filters", rounding_fn=math.ceil)
    assert int((Filters().group_view(near).amax(1) > 0).sum()) == 1
    assert torch.count_nonzero(structure_level_mask(t, 1.0, "Filters")) == 0
    assert torch.equal(structure_level_mask(t, 0.0, "Filters"), torch.ones_like(t))


def test_structure_level_mask_group_len_and_blocks():
    t = torch.randn(8, 4, 3, 3, generator=torch.Generator().manual_seed(3))
    mask = structure_level_mask(t, 0.5, "Filters", group_len=2)
    per_filter = Filters().group_view(mask).amax(1).view(4, 2)
    assert torch.equal(per_filter[:, 0], per_filter[:, 1]) and int(per_filter[:, 0].sum()) == 2
    blocks = Blocks((2, 2, 3, 1))
    bmask = structure_level_mask(t, 0.25, blocks)
    view = blocks.group_view(bmask)
    assert torch.equal(view.amax(1), view.amin(1))
    assert int((view.amax(1) == 0).sum()) == math.floor(0.25 * blocks.num_structures(t.shape))


def test_structure_level_noise_is_reproducible_with_a_generator():
    t = torch.randn(32, 4, 3, 3, generator=torch.Generator().manual_seed(0))
    plain = structure_level_binary_map(t, 0.5, "Filters")
    a = structure_level_binary_map(t, 0.5, "Filters", noise=1.0, generator=torch.Generator().manual_seed(7))
    b = structure_level_binary_map(t, 0.5, "Filters", noise=1.0, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert int((a == 0).sum()) == 16
    assert not torch.equal(a, plain)  # with epsilon = 1 the ranking is always perturbed


def test_structure_level_mask_with_external_scores():
    t = torch.randn(4, 2, 3, 3)
    keep = structure_level_binary_map(t, 0.5, "Filters", scores=torch.tensor([0.1, 9.0, 0.2, 5.0]))
    assert keep.tolist() == [0.0, 1.0, 0.0, 1.0]


def test_structure_threshold_mask():
    t = torch.ones(3, 2, 2, 2) * torch.tensor([0.1, 1.0, 0.5]).view(3, 1, 1, 1)
    mask = structure_threshold_mask(t, 0.4, "Filters", p=1, length_normalized=True)
    assert mask.flatten(1).amax(1).tolist() == [0.0, 1.0, 1.0]


@pytest.mark.parametrize(("n", "m", "shape"), [(2, 4, (8, 16, 3, 3)), (2, 4, (6, 8)), (1, 4, (4, 8)), (3, 8, (2, 16))])
def test_nm_mask_pattern(n, m, shape):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    mask = nm_mask(t, n, m)
    groups = mask.movedim(1, -1).reshape(-1, m)
    assert torch.all(groups.sum(1) == n)
    values = t.abs().movedim(1, -1).reshape(-1, m)
    kept_min = torch.where(groups == 1, values, torch.inf).amin(1)
    pruned_max = torch.where(groups == 0, values, -torch.inf).amax(1)
    assert torch.all(kept_min >= pruned_max)


def test_nm_mask_ties_keep_earlier_positions():
    assert nm_mask(torch.ones(1, 4), 2, 4).tolist() == [[1.0, 1.0, 0.0, 0.0]]
    with pytest.raises(ConfigError, match="multiple of 4"):
        nm_mask(torch.ones(2, 6), 2, 4)


def test_bottom_k_keep_map():
    assert bottom_k_keep_map(torch.tensor([2.0, 1.0, 1.0]), 1).tolist() == [True, False, True]
    assert bottom_k_keep_map(torch.tensor([2.0, 1.0]), 0).all()
