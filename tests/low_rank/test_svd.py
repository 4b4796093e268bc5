"""The math of truncated SVD and the closed-form costs of factorizations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.low_rank import (
    break_even_rank,
    dense_cost,
    energy_kept,
    energy_rank,
    factorize_layer,
    factorized_cost,
    full_rank,
    singular_values,
    truncated_svd,
)


def _matrix_with_singular_values(values, m=7, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    s = torch.zeros(m, n, dtype=torch.float64)
    for i, value in enumerate(values):
        s[i, i] = value
    return u @ s @ v.T


def test_full_rank_factors_reproduce_the_matrix():
    w = torch.randn(12, 30)
    factors = truncated_svd(w, 12)
    assert factors.left.shape == (12, 12) and factors.right.shape == (12, 30)
    assert factors.left.dtype == torch.float32
    torch.testing.assert_close(factors.left @ factors.right, w, rtol=1e-5, atol=1e-5)
    assert factors.energy == pytest.approx(1.0)


def test_truncation_error_is_the_tail_of_the_spectrum():
    """Eckart-Young: the squared Frobenius error of the best rank-k approximation is sum_{i>=k} s_i^2."""
    w = torch.randn(20, 16, dtype=torch.float64)
    s = singular_values(w)
    for k in (1, 4, 10):
        factors = truncated_svd(w, k)
        error = torch.linalg.matrix_norm(w - factors.left @ factors.right) ** 2
        assert float(error) == pytest.approx(float((s[k:] ** 2).sum()), rel=1e-9)
        assert factors.energy == pytest.approx(1 - float(error) / float((s**2).sum()), rel=1e-9)


@pytest.mark.parametrize("split", ["sqrt", "first", "second"])
def test_splits_give_the_same_product(split):
    w = torch.randn(9, 6, dtype=torch.float64)
    reference = truncated_svd(w, 3, split="sqrt")
    factors = truncated_svd(w, 3, split=split)
    torch.testing.assert_close(factors.left @ factors.right, reference.left @ reference.right)
    col_norms, row_norms = factors.left.norm(dim=0), factors.right.norm(dim=1)
    s = singular_values(w)[:3]
    expected = {"sqrt": (s.sqrt(), s.sqrt()), "first": (torch.ones(3), s), "second": (s, torch.ones(3))}[split]
    torch.testing.assert_close(col_norms, expected[0].to(col_norms))
    torch.testing.assert_close(row_norms, expected[1].to(row_norms))


def test_energy_rank_is_the_smallest_rank_reaching_the_fraction():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0], dtype=torch.float64)  # squares 16, 9, 4, 1 of 30
    assert energy_rank(s, 0.5) == 1  # 16/30 = 0.533
    assert energy_rank(s, 16 / 30) == 1  # reached exactly
    assert energy_rank(s, 0.54) == 2  # 25/30 = 0.833
    assert energy_rank(s, 0.9) == 3  # 29/30 = 0.967
    assert energy_rank(s, 0.97) == 4
    assert energy_rank(s, 1.0) == 4
    assert energy_kept(s, 2) == pytest.approx(25 / 30)


def test_energy_one_keeps_only_the_numerical_rank():
    w = _matrix_with_singular_values([5.0, 2.0, 0.5])  # 7 x 5 of rank 3
    factors = truncated_svd(w, energy=1.0)
    assert factors.rank == 3
    torch.testing.assert_close(factors.left @ factors.right, w)


def test_energy_selection_in_truncated_svd():
    w = _matrix_with_singular_values([4.0, 3.0, 2.0, 1.0])
    assert truncated_svd(w, energy=0.8).rank == 2
    assert truncated_svd(w, energy=0.8).energy == pytest.approx(25 / 30)


def test_zero_matrix_keeps_one_component():
    factors = truncated_svd(torch.zeros(4, 3), energy=0.9)
    assert factors.rank == 1 and factors.energy == 1.0
    assert torch.count_nonzero(factors.left @ factors.right) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "positive integer"),
        ({"rank": 2.5}, "positive integer"),
        ({"rank": 7}, "exceeds the full rank 5"),
        ({"energy": 0.0}, r"\(0, 1\]"),
        ({"energy": 1.5}, r"\(0, 1\]"),
        ({}, "exactly one"),
        ({"rank": 2, "energy": 0.5}, "exactly one"),
        ({"rank": 2, "split": "half"}, "split must be one of"),
    ],
)
def test_bad_arguments_raise_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        truncated_svd(torch.randn(5, 8), **kwargs)


def test_a_tensor_that_is_not_a_matrix_is_refused():
    with pytest.raises(ConfigError, match="matrix"):
        truncated_svd(torch.randn(2, 3, 4), 1)


# --- costs ---------------------------------------------------------------------------------------


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_linear_parameter_formula(bias):
    layer = nn.Linear(80, 50, bias=bias)
    assert dense_cost(layer).params == 80 * 50 + 50 * bias
    for k in (1, 4, 30, 50):
        new, _ = factorize_layer(layer, k)
        expected = k * (80 + 50) + 50 * bias
        assert _count(new) == expected == factorized_cost(layer, None, k).params
        assert factorized_cost(layer, None, k).macs == k * (80 + 50)


@pytest.mark.parametrize("method", ["channel", "spatial"])
def test_conv_parameter_formulas(method):
    layer = nn.Conv2d(20, 50, (5, 3))
    per_rank = 20 * 5 * 3 + 50 if method == "channel" else 20 * 5 + 50 * 3
    for k in (1, 7, full_rank(layer, method)):
        new, _ = factorize_layer(layer, k, method=method)
        assert _count(new) == k * per_rank + 50 == factorized_cost(layer, method, k).params


def test_full_ranks():
    assert full_rank(nn.Linear(800, 500)) == 500
    conv = nn.Conv2d(20, 50, (5, 3))
    assert full_rank(conv, "channel") == min(50, 20 * 15)
    assert full_rank(conv, "spatial") == min(50 * 3, 20 * 5)


@pytest.mark.parametrize(
    ("layer", "method", "expected"),
    [
        (nn.Linear(800, 500), None, 307),  # 400000 / 1300 = 307.7
        (nn.Linear(2048, 1000), None, 671),  # the original's ResNet-50 FC ("k ~ 672")
        (nn.Linear(50, 10), None, 8),
        (nn.Conv2d(20, 50, 5), "channel", 500 * 50 // (500 + 50)),
        (nn.Conv2d(20, 50, 5), "spatial", 500 * 50 // (100 + 250)),
        (nn.Conv2d(1, 20, 5), "channel", 25 * 20 // 45),
    ],
)
def test_break_even_rank_formula(layer, method, expected):
    assert break_even_rank(layer, method) == expected


@pytest.mark.parametrize(
    ("layer", "method", "shape"),
    [
        (nn.Linear(800, 500), None, (800,)),
        (nn.Linear(64, 48, bias=False), None, (7, 64)),
        (nn.Conv2d(20, 50, 5), "channel", (20, 12, 12)),
        (nn.Conv2d(20, 50, 5), "spatial", (20, 12, 12)),
        (nn.Conv2d(16, 32, 3, stride=(1, 2), padding=1), "spatial", (16, 15, 15)),
    ],
)
def test_break_even_rank_is_the_largest_rank_that_costs_no_more(layer, method, shape):
    k = break_even_rank(layer, method, shape)
    dense = dense_cost(layer, shape)
    at, above = factorized_cost(layer, method, k, shape), factorized_cost(layer, method, k + 1, shape)
    assert at.params <= dense.params and at.macs <= dense.macs
    assert above.params > dense.params or above.macs > dense.macs


def test_spatial_break_even_counts_macs_when_the_input_is_known():
    """A width stride makes the (unstrided) vertical conv cost more MACs than weights suggest."""
    conv = nn.Conv2d(16, 32, 3, stride=(1, 2), padding=1)
    assert break_even_rank(conv, "spatial", (16, 15, 15)) < break_even_rank(conv, "spatial")


def test_cost_macs_match_the_graph_of_the_factorized_model():
    """The closed formulas agree with the MACs that distiller.summary counts on the traced graph."""
    from distiller.summary import compute_summary

    for method in ("channel", "spatial"):
        conv = nn.Conv2d(6, 10, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
        model = nn.Sequential(conv)
        shape = (6, 17, 19)
        rank = 4
        model[0], _ = factorize_layer(conv, rank, method=method)
        macs = compute_summary(model, torch.randn(1, *shape)).attrs["total_macs"]
        assert macs == factorized_cost(conv, method, rank, shape).macs
        dense = compute_summary(nn.Sequential(conv), torch.randn(1, *shape)).attrs["total_macs"]
        assert dense == dense_cost(conv, shape).macs


def test_unsupported_layers_are_refused_with_the_reason():
    with pytest.raises(ConfigError, match="grouped convolution"):
        full_rank(nn.Conv2d(8, 8, 3, groups=2))
    with pytest.raises(ConfigError, match="supports nn.Linear and nn.Conv2d"):
        full_rank(nn.BatchNorm2d(3))
    with pytest.raises(ConfigError, match="use channel or spatial"):
        full_rank(nn.Conv2d(3, 4, 3), "linear")
    with pytest.raises(ConfigError, match="method of the layer must be one of"):
        full_rank(nn.Linear(3, 4), "tucker")
