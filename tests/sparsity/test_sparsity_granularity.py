"""Granularities: group views are exact inverses, masks zero whole structures, names resolve."""

from __future__ import annotations

import math

import pytest
import torch

from distiller.errors import ConfigError
from distiller.sparsity.granularity import (
    NM,
    Blocks,
    Channels,
    Cols,
    Element,
    Filters,
    Kernels,
    Layer,
    Rows,
    granularity_from_name,
)

CONV = (6, 4, 3, 3)
FC = (6, 8)

CASES = [
    (Element(), CONV, 216),
    (Filters(), CONV, 6),
    (Channels(), CONV, 4),
    (Kernels(), CONV, 24),
    (Layer(), CONV, 1),
    (Blocks((2, 2, 1, 1)), CONV, 3 * 2 * 3 * 3),
    (Blocks((1, 1, 3, 1)), CONV, 6 * 4 * 3),  # a kernel column: not an original block shape
    (Blocks((3, 4, 3, 3)), CONV, 2),
    (NM(2, 4), CONV, 6 * 3 * 3),
    (Filters(), FC, 6),
    (Channels(), FC, 8),
    (Rows(), FC, 6),
    (Cols(), FC, 8),
    (Blocks((2, 4)), FC, 6),
    (Blocks((3, 2, 1, 1)), FC, 8),  # the original's 4-element spelling on a Linear weight
    (NM(1, 2), FC, 6 * 4),
]


def _structure_index(g, shape) -> torch.Tensor:
    """For each element, the index of the structure it belongs to (via expand)."""
    n = g.num_structures(shape)
    return g.expand(torch.arange(n, dtype=torch.float64), shape)


@pytest.mark.parametrize(("g", "shape", "n"), CASES, ids=lambda v: str(v))
def test_view_roundtrip_counts_and_norms(g, shape, n):
    t = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    view = g.group_view(t)
    assert view.shape == (n, t.numel() // n)
    assert torch.equal(g._from_groups(view, t.shape), t)
    assert g.num_structures(shape) == n
    # Each structure's elements, found through expand, are exactly the view's row.
    index = _structure_index(g, shape)
    for s in (0, n - 1):
        assert torch.equal(torch.sort(t[index == s]).values, torch.sort(view[s]).values)
    norms = g.group_norms(t, p=2, length_normalized=True)
    assert torch.allclose(norms, view.norm(dim=1) / view.shape[1])
    assert torch.allclose(g.group_norms(t, p="max"), view.abs().amax(dim=1))


@pytest.mark.parametrize(("g", "shape", "n"), CASES, ids=lambda v: str(v))
def test_expanded_mask_zeroes_whole_structures(g, shape, n):
    keep = torch.ones(n)
    keep[::2] = 0
    mask = g.expand(keep, shape)
    assert mask.shape == torch.Size(shape) and mask.is_contiguous()
    view = g.group_view(mask)
    assert torch.equal(view.amax(dim=1), keep) and torch.equal(view.amin(dim=1), keep)


def test_known_structures():
    t = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(Channels().group_view(t)[1], torch.cat([t[0, 1].flatten(), t[1, 1].flatten()]))
    assert torch.equal(Kernels().group_view(t)[4], t[1, 1].flatten())
    w = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(Cols().group_view(w)[2], w[:, 2])
    assert torch.equal(Channels().group_view(w), Cols().group_view(w))  # "Channels" on 2-D = columns
    assert torch.equal(Blocks((1, 2)).group_view(w)[1], w[0, 2:4])
    assert torch.equal(NM(2, 4).group_view(w)[2], w[2])
    # N:M on a conv groups input channels at each (out, kh, kw) position.
    c = torch.arange(2 * 4 * 1 * 2, dtype=torch.float32).reshape(2, 4, 1, 2)
    assert torch.equal(NM(2, 4).group_view(c)[1], c[0, :, 0, 1])


def test_group_len_joins_adjacent_structures():
    t = torch.randn(8, 4, 3, 3)
    norms = Filters().group_norms(t, p=1, group_len=2)
    assert norms.shape == (4,)
    assert torch.allclose(norms[1], t[2:4].abs().sum())
    mask = Filters().expand(torch.tensor([1.0, 0.0, 1.0, 1.0]), t.shape, group_len=2)
    assert mask[2:4].sum() == 0 and mask[:2].min() == 1 and mask[4:].min() == 1
    with pytest.raises(ConfigError, match="group_len"):
        Filters().group_view(t, group_len=3)


@pytest.mark.parametrize(
    ("g", "shape", "match"),
    [
        (Kernels(), (4, 5), "at least 3"),
        (Rows(), (2, 3, 3, 3), "2-D"),
        (Blocks((4, 3, 1, 1)), (6, 4, 3, 3), "tile"),
        (Blocks((2, 2, 2)), (4, 4), "more non-1"),
        (NM(2, 4), (8, 6), "multiple of 4"),
    ],
)
def test_shape_errors(g, shape, match):
    with pytest.raises(ConfigError, match=match):
        g.group_view(torch.zeros(shape))


def test_granularity_from_name():
    for name, cls in [
        ("Filters", Filters),
        ("3D", Filters),
        ("Channels", Channels),
        ("2D", Kernels),
        ("Kernels", Kernels),
        ("Rows", Rows),
        ("Cols", Cols),
        ("4D", Layer),
        ("Layer", Layer),
        ("Element", Element),
    ]:
        assert type(granularity_from_name(name)) is cls
    assert granularity_from_name("Blocks", block_shape=[1, 4, 1, 1]) == Blocks((1, 4, 1, 1))
    assert granularity_from_name("NM", n=2, m=4) == NM(2, 4) == granularity_from_name("2:4")
    assert str(NM(2, 4)) == "2:4"
    g = Filters()
    assert granularity_from_name(g) is g
    with pytest.raises(ConfigError, match="Did you mean 'Channels'"):
        granularity_from_name("Chanels")
    with pytest.raises(ConfigError, match="block_shape"):
        granularity_from_name("Blocks")
    with pytest.raises(ConfigError, match="n <= m"):
        NM(5, 4)


def test_structure_size():
    assert Kernels().structure_size(CONV) == 9
    assert Blocks((2, 2, 1, 1)).structure_size(CONV) == 4
    assert Layer().structure_size(CONV) == math.prod(CONV)
