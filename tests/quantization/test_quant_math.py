"""Range-linear quantization math, with the original Distiller's values (its tests/test_quant_utils.py)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization import q_utils
from distiller.quantization.linear import (
    asymmetric_linear_quantization_params,
    clamp,
    get_quantized_range,
    linear_dequantize,
    linear_quantize,
    linear_quantize_clamp,
    quant_params_for_range,
    quantized_range_of,
    symmetric_linear_quantization_params,
)
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.ranges import (
    get_tensor_avg_max_abs,
    get_tensor_avg_min_max,
    get_tensor_max_abs,
    get_tensor_mean_n_stds_max_abs,
    get_tensor_mean_n_stds_min_max,
    get_tensor_min_max,
    get_tensor_stats,
)
from distiller.quantization.scale_approx import (
    approx_scale_as_mult_and_shift,
    get_scale_approximation_mult,
    get_scale_approximation_params,
    get_scale_approximation_shift_bits,
)
from distiller.quantization.ste import LinearQuantizeSTE, linear_quantize_ste

T = torch.tensor

# --- symmetric / asymmetric parameters ------------------------------------------------------------


@pytest.mark.parametrize("sat", [4.0, 4])
def test_symmetric_params_scalar(sat):
    # n = (2^8 - 1) / 2 = 127.5 -> 127.5 / 4 = 31.875; restricted n = 127 -> 31.75
    scale, zp = symmetric_linear_quantization_params(8, sat)
    assert scale.dim() == 0 and scale.item() == 31.875 and zp.item() == 0
    scale, zp = symmetric_linear_quantization_params(8, sat, restrict_qrange=True)
    assert scale.item() == 31.75 and zp.item() == 0


@pytest.mark.parametrize("restrict", [False, True])
def test_symmetric_params_zero_saturation_gives_scale_one(restrict):
    scale, zp = symmetric_linear_quantization_params(8, 0.0, restrict)
    assert scale.item() == 1 and zp.item() == 0
    scale, zp = symmetric_linear_quantization_params(8, T([4.0, 0.0]), restrict)
    assert torch.equal(scale, T([31.75 if restrict else 31.875, 1.0]))


@pytest.mark.parametrize("sat", [T([4.0, 10.0]), T([4, 10])])
def test_symmetric_params_tensor(sat):
    scale, zp = symmetric_linear_quantization_params(8, sat)
    assert torch.equal(scale, T([31.875, 12.75]))
    assert torch.equal(zp, torch.zeros(2))
    scale, zp = symmetric_linear_quantization_params(8, sat, True)
    assert torch.equal(scale, T([31.75, 12.7]))
    assert torch.equal(zp, torch.zeros(2))


def test_symmetric_params_do_not_modify_input():
    sat = T([0.0, 2.0])
    symmetric_linear_quantization_params(8, sat)
    assert torch.equal(sat, T([0.0, 2.0]))


@pytest.mark.parametrize("sat", [-5.0, T([-5.0, 10.0]), float("inf"), float("nan")])
def test_symmetric_params_bad_saturation_raises(sat):
    with pytest.raises(QuantizationError, match="saturation value"):
        symmetric_linear_quantization_params(8, sat)


@pytest.mark.parametrize("bits", [0, -1, 2.5, True, "8"])
def test_bad_num_bits_raises(bits):
    with pytest.raises(ConfigError, match="num_bits"):
        symmetric_linear_quantization_params(bits, 1.0)
    with pytest.raises(ConfigError, match="num_bits"):
        get_quantized_range(bits)


@pytest.mark.parametrize(
    "sat_min, sat_max, integral, signed, scale, zp",
    [
        # 255 / (6 - -2) = 31.875; zp = 31.875 * -2 = -63.75 -> -64; signed: + 128
        (-2.0, 6.0, True, False, 31.875, -64),
        (-2.0, 6.0, True, True, 31.875, 64),
        (-2.0, 6.0, False, False, 31.875, -63.75),
        (-2.0, 6.0, False, True, 31.875, 64.25),
        # the original's cases: 255 / 12 = 21.25; zp = -42.5 (rounds half to even: -42)
        (-2.0, 10.0, True, False, 21.25, -42),
        (-2.0, 10.0, True, True, 21.25, 86),
        (-2.0, 10.0, False, False, 21.25, -42.5),
        (-2, 10, False, True, 21.25, 85.5),
        # the range is widened to contain 0
        (5.0, 10.0, True, False, 25.5, 0),
        (-10.0, -5.0, True, False, 25.5, -255),
        (0.0, 0.0, True, False, 1.0, 0),
    ],
)
def test_asymmetric_params_scalar(sat_min, sat_max, integral, signed, scale, zp):
    s, z = asymmetric_linear_quantization_params(8, sat_min, sat_max, integral_zero_point=integral, signed=signed)
    assert s.item() == scale
    assert z.item() == zp


def test_asymmetric_params_tensors_broadcast_with_scalars():
    scale, zp = asymmetric_linear_quantization_params(8, -10.0, T([-2.0, 5.0]))
    assert torch.equal(scale, T([25.5, 17.0])) and torch.equal(zp, T([-255.0, -170.0]))
    scale, zp = asymmetric_linear_quantization_params(8, 0.0, T([0, 5]))
    assert torch.equal(scale, T([1.0, 51.0])) and torch.equal(zp, T([0.0, 0.0]))
    scale, zp = asymmetric_linear_quantization_params(8, T([-2.0, 5.0]), 10.0)
    assert torch.equal(scale, T([21.25, 25.5])) and torch.equal(zp, T([-42.0, 0.0]))
    scale, zp = asymmetric_linear_quantization_params(8, T([-2.0, 5.0, -10.0, 0.0]), T([10.0, 10.0, -5.0, 0.0]))
    assert torch.equal(scale, T([21.25, 25.5, 25.5, 1.0]))
    assert torch.equal(zp, T([-42.0, 0.0, -255.0, 0.0]))


@pytest.mark.parametrize(
    "sat_min, sat_max",
    [(5.0, 4.0), (5.0, T([5.0, 3.0])), (T([5.0, 3.0]), 4.0), (T([5.0, 3.0]), T([4.0, 7.0]))],
)
def test_asymmetric_params_min_above_max_raises(sat_min, sat_max):
    with pytest.raises(QuantizationError, match="must not exceed"):
        asymmetric_linear_quantization_params(8, sat_min, sat_max)


def test_quant_params_for_range_chooses_by_mode():
    # symmetric: sat = max(|-2|, |6|) = 6 -> 127.5 / 6 = 21.25
    scale, zp = quant_params_for_range(8, LinearQuantMode.SYMMETRIC, -2.0, 6.0)
    assert (scale.item(), zp.item()) == (21.25, 0)
    scale, zp = quant_params_for_range(8, "sym_restr", T([-8.0, -1.0]), T([2.0, 4.0]))
    assert torch.equal(scale, T([127 / 8, 127 / 4]))
    scale, zp = quant_params_for_range(8, "asym_u", -2.0, 6.0)
    assert (scale.item(), zp.item()) == (31.875, -64)
    scale, zp = quant_params_for_range(8, "asym_s", -2.0, 6.0)
    assert (scale.item(), zp.item()) == (31.875, 64)


# --- integer ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_bits, signed, restrict, expected",
    [
        (8, False, False, (0, 255)),
        (8, False, True, (0, 255)),
        (8, True, False, (-128, 127)),
        (8, True, True, (-127, 127)),
        (4, False, False, (0, 15)),
        (4, True, False, (-8, 7)),
        (4, True, True, (-7, 7)),
    ],
)
def test_get_quantized_range(num_bits, signed, restrict, expected):
    assert get_quantized_range(num_bits, signed=signed, signed_restrict_qrange=restrict) == expected


@pytest.mark.parametrize(
    "mode, expected",
    [
        (LinearQuantMode.SYMMETRIC, (-128, 127)),
        (LinearQuantMode.SYMMETRIC_RESTRICTED, (-127, 127)),
        (LinearQuantMode.ASYMMETRIC_UNSIGNED, (0, 255)),
        (LinearQuantMode.ASYMMETRIC_SIGNED, (-128, 127)),
    ],
)
def test_quantized_range_of(mode, expected):
    assert quantized_range_of(8, mode) == expected
    assert quantized_range_of(8, mode.name.lower()) == expected


# --- quantize / dequantize ----------------------------------------------------------------------------


def test_quantize_dequantize_hand_values():
    x = T([-2.0, -0.5, 0.0, 1.0, 6.0, 7.0])
    scale, zp = 31.875, -64.0  # asymmetric unsigned over [-2, 6]
    # 31.875 * x + 64 = [0.25, 48.0625, 64, 95.875, 255.25, 287.125]
    q = linear_quantize(x, scale, zp)
    assert torch.equal(q, T([0.0, 48.0, 64.0, 96.0, 255.0, 287.0]))
    qc = linear_quantize_clamp(x, scale, zp, 0, 255)
    assert torch.equal(qc, T([0.0, 48.0, 64.0, 96.0, 255.0, 255.0]))
    assert torch.equal(linear_dequantize(qc, scale, zp), (qc - 64) / 31.875)
    assert linear_dequantize(qc, scale, zp)[2] == 0  # 0 is exact


def test_inplace_variants_write_into_input():
    x = T([-2.0, 1.0, 7.0])
    out = linear_quantize_clamp(x, 31.875, -64.0, 0, 255, inplace=True)
    assert out is x and torch.equal(x, T([0.0, 96.0, 255.0]))
    out = linear_dequantize(x, 31.875, -64.0, inplace=True)
    assert out is x and torch.allclose(x, T([-2.0, 1.0, 6.0]), atol=1 / 64)
    y = T([-3.0, 3.0])
    assert clamp(y, -1, 1, inplace=True) is y and torch.equal(y, T([-1.0, 1.0]))
    assert torch.equal(clamp(T([-3.0, 3.0]), -2, 2), T([-2.0, 2.0]))


def test_per_channel_quantization_broadcasts():
    w = T([[-1.0, 0.5], [-10.0, 4.0]])
    scale, zp = symmetric_linear_quantization_params(8, get_tensor_max_abs(w, per_dim=0))
    q = linear_quantize_clamp(w, scale.view(-1, 1), zp.view(-1, 1), -128, 127)
    # channel 0: 127.5 * [-1, 0.5] = [-127.5, 63.75]; channel 1: 12.75 * [-10, 4] = [-127.5, 51]
    assert torch.equal(q, T([[-128.0, 64.0], [-128.0, 51.0]]))


@settings(max_examples=200, deadline=None)
@given(
    num_bits=st.integers(2, 8),
    mode=st.sampled_from(list(LinearQuantMode)),
    lo=st.floats(-1e3, 1e3, allow_subnormal=False),
    width=st.floats(1e-3, 1e3, allow_subnormal=False),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=16),
)
def test_round_trip_error_is_at_most_half_a_step(num_bits, mode, lo, width, fractions):
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(lo + width, dtype=torch.float64)
    scale, zp = quant_params_for_range(num_bits, mode, lo_t, hi_t)
    qmin, qmax = quantized_range_of(num_bits, mode)
    x = (lo_t + torch.tensor(fractions, dtype=torch.float64) * (hi_t - lo_t)).clamp(lo_t, hi_t)
    x_hat = linear_dequantize(linear_quantize_clamp(x, scale, zp, qmin, qmax), scale, zp)
    assert ((x - x_hat).abs() <= 0.5 / scale * (1 + 1e-9)).all()


# --- ranges -------------------------------------------------------------------------------------------

# Rows of the 6x6 view: mins -93, -94, -56, -86, -74, -95 (mean -83); maxes 33, 79, 87, 81, 83, 69 (mean 72).
# Sum -576 -> mean -16; sum of squares 147578 -> unbiased variance (147578 - 36 * 256) / 35 = 3953.2.
VALUES = T(
    [-93, 33, -77, -42, -89, -55, 79, -19, -94, 69, -46, -88, 19, -43, -38, 30, -56, 87]
    + [27, -86, 81, -60, -19, 59, 58, -47, -26, 12, -74, 83, -83, -28, 69, 63, -95, -87]
).float()
T4D = VALUES.reshape(2, 2, 3, 3)
T2D = VALUES.reshape(6, 6)
STD = 3953.2**0.5  # 62.87447...


def test_get_tensor_min_max():
    assert get_tensor_min_max(T4D) == (T(-95.0), T(87.0))
    mins, maxs = get_tensor_min_max(T4D, per_dim=0)
    assert torch.equal(mins, T([-94.0, -95.0])) and torch.equal(maxs, T([87.0, 83.0]))
    mins, maxs = get_tensor_min_max(T2D, per_dim=0)
    assert torch.equal(mins, T([-93.0, -94.0, -56.0, -86.0, -74.0, -95.0]))
    assert torch.equal(maxs, T([33.0, 79.0, 87.0, 81.0, 83.0, 69.0]))
    # per_dim reduces every other dimension: the columns of the 6x6 view
    mins, maxs = get_tensor_min_max(T2D, per_dim=1)
    assert torch.equal(mins, T([-93.0, -86.0, -94.0, -60.0, -95.0, -88.0]))
    assert torch.equal(maxs, T([79.0, 33.0, 81.0, 69.0, -19.0, 87.0]))
    assert all(torch.equal(a, b) for a, b in zip(get_tensor_min_max(T2D, per_dim=-1), (mins, maxs)))


@pytest.mark.parametrize(
    "fn, kwarg",
    [
        (get_tensor_min_max, "per_dim"),
        (get_tensor_avg_min_max, "across_dim"),
        (get_tensor_max_abs, "per_dim"),
        (get_tensor_avg_max_abs, "across_dim"),
        (get_tensor_mean_n_stds_min_max, "dim"),
    ],
)
@pytest.mark.parametrize("dim", [2, 6, -3])
def test_too_large_dim_raises(fn, kwarg, dim):
    with pytest.raises(ConfigError, match=f"{kwarg}={dim}"):
        fn(T2D, **{kwarg: dim})


def test_empty_tensor_raises():
    with pytest.raises(QuantizationError, match="empty"):
        get_tensor_min_max(torch.empty(0, 3))


def test_get_tensor_avg_min_max():
    assert get_tensor_avg_min_max(T2D) == (T(-95.0), T(87.0))
    assert get_tensor_avg_min_max(T2D, across_dim=0) == (T(-83.0), T(72.0))
    assert get_tensor_avg_min_max(T4D, across_dim=0) == (T(-94.5), T(85.0))


def test_get_tensor_max_abs():
    assert torch.equal(get_tensor_max_abs(T4D), T(95.0))
    assert torch.equal(get_tensor_max_abs(T4D, per_dim=0), T([94.0, 95.0]))
    assert torch.equal(get_tensor_max_abs(T2D, per_dim=0), T([93.0, 94.0, 87.0, 86.0, 83.0, 95.0]))


def test_get_tensor_avg_max_abs():
    assert torch.equal(get_tensor_avg_max_abs(T2D), T(95.0))
    assert torch.equal(get_tensor_avg_max_abs(T2D, across_dim=0), T(83.0))
    assert torch.equal(get_tensor_avg_max_abs(T4D, across_dim=0), T(94.5))


def test_get_tensor_mean_n_stds_min_max():
    mins, maxs = get_tensor_mean_n_stds_min_max(VALUES)
    torch.testing.assert_close(mins, T(-16.0 - STD))
    torch.testing.assert_close(maxs, T(-16.0 + STD))
    assert round(STD, 5) == 62.87448  # the original test: 62.87447738647461 (float32)
    # mean -+ 2 std = -141.7 / 109.7: clipped to the actual -95 / 87
    assert get_tensor_mean_n_stds_min_max(VALUES, n_stds=2) == (T(-95.0), T(87.0))
    torch.testing.assert_close(get_tensor_mean_n_stds_max_abs(VALUES), T(16.0 + STD))


def test_get_tensor_mean_n_stds_per_dim_matches_rows():
    mins, maxs = get_tensor_mean_n_stds_min_max(T2D, dim=0, n_stds=0.5)
    for i, row in enumerate(T2D):
        row_min, row_max = get_tensor_mean_n_stds_min_max(row, n_stds=0.5)
        torch.testing.assert_close((mins[i], maxs[i]), (row_min, row_max))


@pytest.mark.parametrize("n_stds", [0, -1, None, True])
def test_get_tensor_mean_n_stds_bad_n_raises(n_stds):
    with pytest.raises(ConfigError, match="n_stds"):
        get_tensor_mean_n_stds_min_max(VALUES, n_stds=n_stds)


def test_get_tensor_stats():
    stats = get_tensor_stats(T([[-3.0, 1.0], [1.0, 5.0]]))
    # mean 1; |x - 1| = 4, 0, 0, 4 -> b = 2; unbiased variance 32 / 3
    assert {k: round(v.item(), 4) for k, v in stats.items()} == {
        "min": -3.0,
        "max": 5.0,
        "mean": 1.0,
        "std": round((32 / 3) ** 0.5, 4),
        "b": 2.0,
    }
    per_row = get_tensor_stats(T([[-3.0, 1.0], [1.0, 5.0]]), per_dim=0)
    assert torch.equal(per_row["mean"], T([-1.0, 3.0])) and torch.equal(per_row["b"], T([2.0, 2.0]))
    assert torch.equal(get_tensor_stats(T([7.0]))["std"], T(0.0))


# --- scale approximation ------------------------------------------------------------------------------


def test_scale_approximation_hand_values():
    # n = floor(log2(255 / 0.3)) = floor(log2(850)) = 9; A = floor(512 * 0.3) = 153; 153 / 512 = 0.298828125
    assert get_scale_approximation_shift_bits(0.3, 8).item() == 9
    assert get_scale_approximation_mult(0.3, 9).item() == 153
    mult, shift = get_scale_approximation_params(0.3, 8)
    assert (mult.item(), shift.item()) == (153, 9)
    assert approx_scale_as_mult_and_shift(0.3, 8).item() == 0.298828125
    # limit caps the shift at mult_bits: n = 8, A = floor(256 * 0.3) = 76
    assert get_scale_approximation_params(0.3, 8, limit=True) == (T(76.0), T(8.0))
    assert approx_scale_as_mult_and_shift(0.3, 8, limit=True).item() == 0.296875


def test_scale_approximation_elementwise_and_dtype():
    scales = T([0.3, 0.01, 1000.0])
    # 0.01: n = floor(log2(25500)) = 14, A = floor(163.84) = 163; 1000: n = floor(log2(0.255)) = -2, A = 250
    mult, shift = get_scale_approximation_params(scales, 8)
    assert torch.equal(mult, T([153.0, 163.0, 250.0])) and torch.equal(shift, T([9.0, 14.0, -2.0]))
    mult, shift = get_scale_approximation_params(scales, 8, limit=True)
    assert torch.equal(mult, T([76.0, 2.0, 250.0])) and torch.equal(shift, T([8.0, 8.0, -2.0]))
    assert approx_scale_as_mult_and_shift(scales, 8).dtype == torch.float32
    assert approx_scale_as_mult_and_shift(scales.double(), 8).dtype == torch.float64
    approx = approx_scale_as_mult_and_shift(T([0.3, 0.01]), 16)
    assert ((approx <= T([0.3, 0.01])) & (approx > T([0.3, 0.01]) * (1 - 2**-15))).all()


def test_scale_approximation_bad_input_raises():
    with pytest.raises(QuantizationError, match="finite and > 0"):
        approx_scale_as_mult_and_shift(T([0.3, 0.0]), 8)
    with pytest.raises(ConfigError, match="mult_bits"):
        get_scale_approximation_params(0.3, 0)


# --- straight-through estimator -----------------------------------------------------------------------


def test_ste_forward_quantizes_and_gradient_is_identity():
    x = T([-2.0, -0.49, 0.3, 6.0], requires_grad=True)
    y = LinearQuantizeSTE.apply(x, 31.875, -64.0, True, False)
    expected = linear_dequantize(linear_quantize(x.detach(), 31.875, -64.0), 31.875, -64.0)
    assert torch.equal(y.detach(), expected)
    upstream = T([1.0, -2.0, 3.0, 0.5])
    y.backward(upstream)
    assert torch.equal(x.grad, upstream)


def test_ste_without_dequantize_and_inplace():
    x = T([0.1, 0.26], requires_grad=True)
    q = linear_quantize_ste(x, 10.0, 0.0, dequantize=False)
    assert torch.equal(q.detach(), T([1.0, 3.0]))
    q.sum().backward()
    assert torch.equal(x.grad, T([1.0, 1.0]))
    leaf = T([0.1, 0.26], requires_grad=True)
    y = leaf * 1  # in-place ops need a non-leaf
    out = linear_quantize_ste(y, 10.0, 0.0, inplace=True)
    assert torch.allclose(out.detach(), T([0.1, 0.3]))
    out.sum().backward()
    assert torch.equal(leaf.grad, T([1.0, 1.0]))


# --- compatibility facade -----------------------------------------------------------------------------


def test_q_utils_reexports_the_original_names():
    original = [
        "LinearQuantMode",
        "symmetric_linear_quantization_params",
        "asymmetric_linear_quantization_params",
        "clamp",
        "linear_quantize",
        "linear_quantize_clamp",
        "linear_dequantize",
        "get_tensor_min_max",
        "get_tensor_avg_min_max",
        "get_tensor_max_abs",
        "get_tensor_avg_max_abs",
        "get_tensor_mean_n_stds_min_max",
        "get_tensor_mean_n_stds_max_abs",
        "get_scale_approximation_shift_bits",
        "get_scale_approximation_mult",
        "get_scale_approximation_params",
        "approx_scale_as_mult_and_shift",
        "AciqSymmetricClipper",
        "AciqAsymmetricClipper",
        "get_quantized_range",
        "LinearQuantizeSTE",
    ]
    assert set(original) <= set(q_utils.__all__)
    assert q_utils.symmetric_linear_quantization_params is symmetric_linear_quantization_params
    assert all(hasattr(q_utils, name) for name in q_utils.__all__)
