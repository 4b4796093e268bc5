"""ACIQ clipping values and the saturation range of each clip mode."""

from __future__ import annotations

import math

import pytest
import torch

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization.aciq import (
    ALPHA_GAUSS,
    ALPHA_GAUSS_HALF_RANGE,
    ALPHA_LAPLACE,
    ALPHA_LAPLACE_HALF_RANGE,
    AciqAsymmetricClipper,
    AciqSymmetricClipper,
    aciq_alpha,
    clip_range_from_stats,
    clip_range_from_tensor,
    solve_alpha,
)
from distiller.quantization.modes import ClipMode, LinearQuantMode

T = torch.tensor
SYM, ASYM = LinearQuantMode.SYMMETRIC, LinearQuantMode.ASYMMETRIC_UNSIGNED


def _published_tolerance(value: float) -> float:
    """One unit of the last published digit (the tables give 2 decimals, a few only 1)."""
    return 10.0 ** -len(repr(value).split(".")[1])


@pytest.mark.parametrize(
    "table, clip_type, half_range",
    [
        (ALPHA_LAPLACE, "laplace", False),
        (ALPHA_LAPLACE_HALF_RANGE, "laplace", True),
        (ALPHA_GAUSS, "gauss", False),
        (ALPHA_GAUSS_HALF_RANGE, "gauss", True),
    ],
)
def test_derivation_reproduces_the_tables(table, clip_type, half_range):
    for bits, published in table.items():
        derived = solve_alpha(bits, clip_type, half_range)
        assert abs(derived - published) < _published_tolerance(published), (bits, derived, published)


def test_published_values_from_the_paper():
    assert [round(solve_alpha(m, ClipMode.LAPLACE), 2) for m in (2, 4, 8)] == [2.83, 5.03, 9.90]
    assert [ALPHA_LAPLACE[m] for m in (2, 3, 4, 8)] == [2.83, 3.89, 5.03, 9.89]
    assert [round(solve_alpha(m, ClipMode.GAUSS), 2) for m in (2, 3, 8)] == [1.71, 2.15, 3.92]
    assert [ALPHA_GAUSS[m] for m in (2, 3, 4, 8)] == [1.71, 2.15, 2.55, 3.92]


def _laplace_mse(a: float, m: int) -> float:
    return 2 * math.exp(-a) + a * a / (3 * 4**m)


def _gauss_mse(a: float, m: int) -> float:
    clip = (a * a + 1) * math.erfc(a / math.sqrt(2)) - a * math.sqrt(2 / math.pi) * math.exp(-a * a / 2)
    return clip + a * a / (3 * 4**m)


@pytest.mark.parametrize("bits", [1, 3, 8])
@pytest.mark.parametrize("clip_type, mse", [("laplace", _laplace_mse), ("gauss", _gauss_mse)])
def test_solution_minimises_the_expected_error(bits, clip_type, mse):
    # brute force over a grid of the error itself (not its derivative, which the solver uses)
    grid = [i / 1000 for i in range(1, 15000)]
    best = min(grid, key=lambda a: mse(a, bits))
    assert solve_alpha(bits, clip_type) == pytest.approx(best, abs=2e-3)


def test_half_range_is_full_range_with_one_more_bit():
    for bits in range(0, 9):
        assert solve_alpha(bits, "laplace", half_range=True) == solve_alpha(bits + 1, "laplace")


def test_aciq_alpha_uses_the_table_then_the_solver():
    assert aciq_alpha(4, "laplace") == 5.03
    assert aciq_alpha(3, "laplace", half_range=True) == 5.02
    assert aciq_alpha(8, ClipMode.GAUSS, half_range=True) == 4.2
    assert aciq_alpha(0, "gauss") == pytest.approx(0.7658, abs=1e-4)  # not in the table
    assert aciq_alpha(16, "laplace") == pytest.approx(solve_alpha(16, "laplace"))
    with pytest.raises(ConfigError, match="GAUSS or LAPLACE"):
        aciq_alpha(8, "avg")


STATS = {"min": -20.0, "max": 20.0, "avg_min": -12.0, "avg_max": 10.0, "mean": -0.5, "std": 2.0, "b": 1.5}


def test_symmetric_clipper():
    # |mean| + alpha * b = 0.5 + 9.89 * 1.5 = 15.335
    low, high = AciqSymmetricClipper(8, ClipMode.LAPLACE)(STATS)
    assert (low.item(), high.item()) == pytest.approx((-15.335, 15.335))
    # Gauss, 4 bits: 0.5 + 2.55 * 2 = 5.6
    assert AciqSymmetricClipper(4, "gauss")(STATS)[1].item() == pytest.approx(5.6)
    # half range: 0.5 + 11.16 * 1.5 = 17.24
    low, high = AciqSymmetricClipper(8, "laplace")(STATS, half_range=True)
    assert (low.item(), high.item()) == pytest.approx((0.0, 17.24))


def test_asymmetric_clipper():
    stats = {"min": -3.0, "max": 30.0, "mean": 1.0, "std": 4.0, "b": 2.0}
    # alpha = 5.03 * 2 = 10.06: [max(-3, -9.06), min(30, 11.06)]
    low, high = AciqAsymmetricClipper(4, "laplace")(stats)
    assert (low.item(), high.item()) == pytest.approx((-3.0, 11.06))
    # half range: alpha = 6.2 * 2: [0, 1 + 12.4]
    low, high = AciqAsymmetricClipper(4, "laplace")(stats, half_range=True)
    assert (low.item(), high.item()) == pytest.approx((0.0, 13.4))
    # Gauss, 2 bits: alpha = 1.71 * 4 = 6.84 -> [-3, 7.84]
    assert AciqAsymmetricClipper(2, "gauss")(stats)[1].item() == pytest.approx(7.84)


def test_clipper_missing_statistic_raises():
    with pytest.raises(QuantizationError, match="'b'"):
        AciqSymmetricClipper(8, "laplace")({"mean": 0.0, "std": 1.0})


@pytest.mark.parametrize(
    "clip_mode, kwargs, expected",
    [
        (ClipMode.NONE, {}, (-20.0, 20.0)),
        ("avg", {}, (-12.0, 10.0)),
        # mean -+ 2 std = -4.5 / 3.5
        ("n_std", {"num_stds": 2}, (-4.5, 3.5)),
        # mean -+ 20 std = -40.5 / 39.5, clipped to the min / max
        ("n_std", {"num_stds": 20}, (-20.0, 20.0)),
        ("laplace", {}, (-15.335, 15.335)),
        ("none", {"half_range": True}, (0.0, 20.0)),
        ("avg", {"half_range": True}, (0.0, 10.0)),
    ],
)
def test_clip_range_from_stats(clip_mode, kwargs, expected):
    low, high = clip_range_from_stats(STATS, clip_mode, 8, SYM, **kwargs)
    assert (low.item(), high.item()) == pytest.approx(expected)


def test_clip_range_from_stats_asymmetric_aciq():
    # alpha = 9.89 * 1.5 = 14.835: [max(-20, -15.335), min(20, 14.335)]
    low, high = clip_range_from_stats(STATS, "laplace", 8, ASYM)
    assert (low.item(), high.item()) == pytest.approx((-15.335, 14.335))


def test_clip_range_from_stats_errors():
    with pytest.raises(ConfigError, match="N_STD needs"):
        clip_range_from_stats(STATS, "n_std", 8, SYM)
    with pytest.raises(ConfigError, match="clip_n_stds must be a number > 0, got 0"):
        clip_range_from_stats(STATS, "n_std", 8, SYM, num_stds=0)
    with pytest.raises(QuantizationError, match="'avg_min'"):
        clip_range_from_stats({"min": -1.0, "max": 1.0}, "avg", 8, SYM)
    with pytest.raises(ConfigError, match="clip mode"):
        clip_range_from_stats(STATS, "max", 8, SYM)


X = T([[-3.0, 1.0], [1.0, 5.0]])  # mean 1, b = mean|x - 1| = 2, per-row mins -3, 1 / maxes 1, 5


def test_clip_range_from_tensor():
    assert clip_range_from_tensor(X, "none", 8, ASYM) == (T(-3.0), T(5.0))
    assert clip_range_from_tensor(X, "avg", 8, ASYM) == (T(-1.0), T(3.0))
    # Laplace, 1 bit: alpha = 1.86 * 2 = 3.72 -> [max(-3, -2.72), min(5, 4.72)]; symmetric: 1 + 3.72
    low, high = clip_range_from_tensor(X, "laplace", 1, ASYM)
    assert (low.item(), high.item()) == pytest.approx((-2.72, 4.72))
    low, high = clip_range_from_tensor(X, "laplace", 1, SYM)
    assert (low.item(), high.item()) == pytest.approx((-4.72, 4.72))
    assert clip_range_from_tensor(X, "none", 8, ASYM, half_range=True) == (T(0.0), T(5.0))


def test_clip_range_from_tensor_per_channel():
    low, high = clip_range_from_tensor(X, "none", 8, SYM, per_dim=0)
    assert torch.equal(low, T([-3.0, 1.0])) and torch.equal(high, T([1.0, 5.0]))
    # rows: means -1, 3; unbiased std sqrt(8); Gauss 2 bits, symmetric: |mean| + 1.71 * sqrt(8)
    _, high = clip_range_from_tensor(X, "gauss", 2, SYM, per_dim=0)
    torch.testing.assert_close(high, T([1.0, 3.0]) + 1.71 * 8**0.5)
    # N_STD with 0.5 std: mean -+ sqrt(2) per row
    low, high = clip_range_from_tensor(X, "n_std", 8, ASYM, num_stds=0.5, per_dim=0)
    torch.testing.assert_close(low, T([-1.0, 3.0]) - 2**0.5)
    with pytest.raises(ConfigError, match="AVG"):
        clip_range_from_tensor(X, "avg", 8, SYM, per_dim=0)
