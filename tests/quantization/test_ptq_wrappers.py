"""Post-training quantization wrappers against hand-derived outputs.

In the style of the original's ``test_post_train_quant.py``: every expected tensor is written out, but
here each one is derived by hand in the comments (scales, zero points, integer weights, bias at the
accumulator scale, accumulator, re-quantized and de-quantized output). Numbers are picked so that no
rounding step lands on a tie (``x.5``), where float32 noise could go either way.

Distiller's convention throughout: ``q = round(scale * x - zp)`` and ``x = (q + zp) / scale``.
Symmetric 8 bits: ``scale = 127.5 / max|x|``, grid ``[-128, 127]``; asymmetric unsigned 8 bits:
``scale = 255 / (max - min)``, ``zp = round(scale * min)``, grid ``[0, 255]`` (signed: ``zp + 128``,
grid ``[-128, 127]``).

The simulation computes these products the way ONNX Runtime does (dividing by the float32 reciprocal
scale; re-quantization multiplier ``s_in' * s_w' / s_out'`` from the reciprocal scales; rescaled
element-wise-add inputs rounded once, after the sum). Away from ties the integers are the ones derived
below with Distiller's multiplying scales.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distiller.errors import QuantizationError
from distiller.modules import Concat, EltwiseAdd, EltwiseMult
from distiller.quantization.modes import ClipMode, LinearQuantMode, ModuleQuantMode
from distiller.quantization.post_train import PostTrainLinearQuantizer
from distiller.quantization.wrappers import (
    RangeLinearEmbeddingWrapper,
    RangeLinearFakeQuantWrapper,
    RangeLinearQuantConcatWrapper,
    RangeLinearQuantEltwiseAddWrapper,
    RangeLinearQuantEltwiseMultWrapper,
    RangeLinearQuantParamLayerWrapper,
    WeightsOnlyQuantWrapper,
)

SYM = LinearQuantMode.SYMMETRIC
ASYM_U = LinearQuantMode.ASYMMETRIC_UNSIGNED
ASYM_S = LinearQuantMode.ASYMMETRIC_SIGNED


def _t(values) -> torch.Tensor:  # noqa: ANN001
    return torch.tensor(values, dtype=torch.float32)


def _close(actual: torch.Tensor, expected) -> None:  # noqa: ANN001
    torch.testing.assert_close(
        actual, _t(expected) if not isinstance(expected, torch.Tensor) else expected, rtol=0, atol=1e-6
    )


def _stat(lo: float, hi: float, avg_lo: float | None = None, avg_hi: float | None = None) -> dict[str, float]:
    entry = {"min": lo, "max": hi}
    if avg_lo is not None:
        entry.update(avg_min=avg_lo, avg_max=avg_hi)
    return entry


def _linear(weight, bias) -> nn.Linear:  # noqa: ANN001
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(_t(weight))
        m.bias.copy_(_t(bias))
    return m.eval()


# The layer of the symmetric cases: W = [[0.5, -1.0], [1.2, 2.55]], b = [0.1, -0.2].
#   max|W| = 2.55 -> w_scale = 127.5 / 2.55 = 50
#   W_q = round(50 W) = [[25, -50], [60, 127.5 -> 127 (clamped)]]
SYM_W, SYM_B = [[0.5, -1.0], [1.2, 2.55]], [0.1, -0.2]
SYM_STATS = {
    "inputs": {0: _stat(-1.0, 2.55, -0.5, 1.275)},  # NONE: sat 2.55 -> 50; AVG: sat 1.275 -> 100
    "output": _stat(-5.1, 10.2, -2.55, 5.1),  # NONE: sat 10.2 -> 12.5; AVG: sat 5.1 -> 25
}


def _sym_layer(**kwargs) -> RangeLinearQuantParamLayerWrapper:  # noqa: ANN003
    kwargs.setdefault("activation_stats", SYM_STATS)
    return RangeLinearQuantParamLayerWrapper(_linear(SYM_W, SYM_B), 8, 8, mode=SYM, **kwargs).eval()


# ---------------------------------------------------------------------------------------------
# Linear / Conv: static mode
# ---------------------------------------------------------------------------------------------


def test_linear_symmetric_clip_none():
    w = _sym_layer(clip_acts=ClipMode.NONE)
    assert torch.equal(w.wrapped_module.weight.data, _t([[25, -50], [60, 127]]))
    assert (float(w.w_scale), float(w.in0_scale), float(w.output_scale)) == (50.0, 50.0, 12.5)
    assert float(w.output_zero_point) == 0.0
    # x = [[1.0, -0.5], [2.0, 0.3]]
    #   input: scale 50 (sat 2.55), q_x = round(50 x) = [[50, -25], [100, 15]]
    #   accum_scale = 50 * 50 = 2500; bias_q = round(2500 * [0.1, -0.2]) = [250, -500]
    #   accum row 0 = [50*25 + (-25)(-50), 50*60 + (-25)*127] + bias = [2500, -175] + [250, -500] = [2750, -675]
    #   accum row 1 = [100*25 + 15*(-50), 100*60 + 15*127] + bias = [1750, 7905] + [250, -500] = [2000, 7405]
    #   output scale 12.5 (sat 10.2): requant = 12.5 / 2500 = 0.005
    #   out_q = round(0.005 accum) = [[13.75 -> 14, -3.375 -> -3], [10, 37.025 -> 37]]
    #   out = out_q / 12.5 = [[1.12, -0.24], [0.8, 2.96]]   (float: [[1.1, -0.275], [0.8, 2.965]])
    out = w(_t([[1.0, -0.5], [2.0, 0.3]]))
    _close(out, [[1.12, -0.24], [0.8, 2.96]])
    meta = out.quant_metadata
    assert (float(meta.scale), float(meta.zero_point), meta.min_q_val, meta.max_q_val) == (12.5, 0.0, -128, 127)


def test_linear_symmetric_clip_avg_clips_the_input():
    w = _sym_layer(clip_acts=ClipMode.AVG)
    assert (float(w.w_scale), float(w.in0_scale), float(w.output_scale)) == (50.0, 100.0, 25.0)  # weights: no clip
    # x = [[1.0, -0.4], [2.0, 0.3]]
    #   input: scale 100 (sat avg 1.275), q_x = round(100 x) = [[100, -40], [200 -> 127 (clamped), 30]]
    #   accum_scale = 100 * 50 = 5000; bias_q = round(5000 * [0.1, -0.2]) = [500, -1000]
    #   row 0 = [100*25 + (-40)(-50), 100*60 + (-40)*127] + bias = [4500, 920] + [500, -1000] = [5000, -80]
    #   row 1 = [127*25 + 30*(-50), 127*60 + 30*127] + bias = [1675, 11430] + [500, -1000] = [2175, 10430]
    #   output scale 25 (sat avg 5.1): requant = 25 / 5000 = 0.005
    #   out_q = round(0.005 accum) = [[25, -0.4 -> 0], [10.875 -> 11, 52.15 -> 52]]
    #   out = out_q / 25 = [[1.0, 0.0], [0.44, 2.08]]   (row 1 in float: [0.8, 2.965]; the input 2.0 clipped to 1.27)
    _close(w(_t([[1.0, -0.4], [2.0, 0.3]])), [[1.0, 0.0], [0.44, 2.08]])


# Asymmetric cases: W = [[0.5, -0.5], [1.0, 2.05]], b = [0.1, -0.25]
#   weights: min -0.5, max 2.05 -> w_scale = 255 / 2.55 = 100, w_zp = round(100 * -0.5) = -50
#   W_q = round(100 W + 50) = [[100, 0], [150, 255]] (unsigned); W_q + w_zp = [[50, -50], [100, 205]]
#   input: [-0.5, 4.6] -> scale 255 / 5.1 = 50, zp = round(50 * -0.5) = -25
#   output: [-2.0, 8.2] -> scale 255 / 10.2 = 25, zp = round(25 * -2.0) = -50
ASYM_W, ASYM_B = [[0.5, -0.5], [1.0, 2.05]], [0.1, -0.25]
ASYM_STATS = {"inputs": {0: _stat(-0.5, 4.6)}, "output": _stat(-2.0, 8.2)}
# x = [[1.0, -0.4], [2.0, 0.3]]
#   q_x = round(50 x + 25) = [[75, 5], [125, 40]]; q_x + zp_x = [[50, -20], [100, 15]]
#   accum_scale = 50 * 100 = 5000; bias_q = round(5000 * [0.1, -0.25]) = [500, -1250]
#   row 0 = [50*50 + (-20)(-50), 50*100 + (-20)*205] + bias = [3500, 900] + [500, -1250] = [4000, -350]
#   row 1 = [100*50 + 15*(-50), 100*100 + 15*205] + bias = [4250, 13075] + [500, -1250] = [4750, 11825]
#   requant = 25 / 5000 = 0.005: out_q = round(0.005 accum + 50) = [[70, 48.25 -> 48], [73.75 -> 74, 109.125 -> 109]]
#   out = (out_q - 50) / 25 = [[0.8, -0.08], [0.96, 2.36]]   (float: [[0.8, -0.07], [0.95, 2.365]])
ASYM_X = [[1.0, -0.4], [2.0, 0.3]]
ASYM_EXPECTED = [[0.8, -0.08], [0.96, 2.36]]


def test_linear_asymmetric_unsigned():
    w = RangeLinearQuantParamLayerWrapper(_linear(ASYM_W, ASYM_B), 8, 8, mode=ASYM_U, activation_stats=ASYM_STATS)
    w.eval()
    assert torch.equal(w.wrapped_module.weight.data, _t([[100, 0], [150, 255]]))
    assert (float(w.w_scale), float(w.w_zero_point)) == (100.0, -50.0)
    assert (float(w.in0_scale), float(w.in0_zero_point)) == (50.0, -25.0)
    assert (float(w.output_scale), float(w.output_zero_point)) == (25.0, -50.0)
    out = w(_t(ASYM_X))
    _close(out, ASYM_EXPECTED)
    assert (out.quant_metadata.min_q_val, out.quant_metadata.max_q_val) == (0, 255)


def test_linear_asymmetric_signed_is_the_unsigned_grid_shifted_by_128():
    # Signed: every zero point + 128 and every integer - 128; q + zp is unchanged, so is the output.
    w = RangeLinearQuantParamLayerWrapper(_linear(ASYM_W, ASYM_B), 8, 8, mode=ASYM_S, activation_stats=ASYM_STATS)
    w.eval()
    assert torch.equal(w.wrapped_module.weight.data, _t([[-28, -128], [22, 127]]))
    assert (float(w.w_zero_point), float(w.in0_zero_point), float(w.output_zero_point)) == (78.0, 103.0, 78.0)
    out = w(_t(ASYM_X))
    _close(out, ASYM_EXPECTED)
    assert (out.quant_metadata.min_q_val, out.quant_metadata.max_q_val) == (-128, 127)


def test_mixed_modes_symmetric_weights_asymmetric_activations():
    # Weights SYM_W (symmetric, scale 50, W_q = [[25, -50], [60, 127]]), activations ASYM_STATS (asym unsigned).
    # x = ASYM_X: q_x + zp_x = [[50, -20], [100, 15]] (input scale 50); accum_scale = 2500
    #   bias_q = round(2500 * [0.1, -0.2]) = [250, -500]
    #   row 0 = [50*25 + 20*50, 50*60 - 20*127] + bias = [2250, 460] + [250, -500] = [2500, -40]
    #   row 1 = [100*25 - 15*50, 100*60 + 15*127] + bias = [1750, 7905] + [250, -500] = [2000, 7405]
    #   output scale 25, zp -50; requant 0.01: out_q = round(0.01 accum + 50) = [[75, 49.6 -> 50], [70, 124.05 -> 124]]
    #   out = (out_q - 50) / 25 = [[1.0, 0.0], [0.8, 2.96]]
    w = RangeLinearQuantParamLayerWrapper(
        _linear(SYM_W, SYM_B), 8, 8, mode=ModuleQuantMode(ASYM_U, SYM), activation_stats=ASYM_STATS
    ).eval()
    assert (float(w.w_scale), float(w.w_zero_point)) == (50.0, 0.0)
    _close(w(_t(ASYM_X)), [[1.0, 0.0], [0.8, 2.96]])


def test_conv1x1_per_channel_weights():
    # 1x1 conv, 2 -> 2 channels; W[0] = [1.275, -0.51], W[1] = [0.2, 2.55]; b = [0.1, -0.2]
    #   per channel: w_scale = [127.5 / 1.275, 127.5 / 2.55] = [100, 50]
    #   W_q = [[127.5 -> 127 (clamped), -51], [10, 127.5 -> 127]]
    # input: sat 2.55 -> 50; output: sat 10.2 -> 12.5 (SYM_STATS, clip NONE)
    # x: one row of two pixels, a = [1.0, -0.4], b = [2.0, 0.3]: q_x a = [50, -20], b = [100, 15]
    #   accum_scale = 50 * [100, 50] = [5000, 2500]; bias_q = [round(5000 * 0.1), round(2500 * -0.2)] = [500, -500]
    #   ch 0 = 127 q0 - 51 q1 + 500: a 6350 + 1020 + 500 = 7870, b 12700 - 765 + 500 = 12435
    #   ch 1 = 10 q0 + 127 q1 - 500: a 500 - 2540 - 500 = -2540, b 1000 + 1905 - 500 = 2405
    #   requant ch 0 = 12.5 / 5000 = 0.0025: round(19.675) = 20, round(31.0875) = 31
    #   requant ch 1 = 12.5 / 2500 = 0.005: round(-12.7) = -13, round(12.025) = 12
    #   out = out_q / 12.5: ch 0 [1.6, 2.48], ch 1 [-1.04, 0.96]   (float: [1.579, 2.497], [-1.02, 0.965])
    conv = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(_t([[1.275, -0.51], [0.2, 2.55]]).view(2, 2, 1, 1))
        conv.bias.copy_(_t([0.1, -0.2]))
    w = RangeLinearQuantParamLayerWrapper(conv, 8, 8, mode=SYM, per_channel_wts=True, activation_stats=SYM_STATS)
    w.eval()
    assert torch.equal(w.w_scale, _t([100, 50]))
    assert torch.equal(conv.weight.data.view(2, 2), _t([[127, -51], [10, 127]]))
    x = _t([[1.0, 2.0], [-0.4, 0.3]]).view(1, 2, 1, 2)  # channel-major: pixel a = x[..., 0], b = x[..., 1]
    _close(w(x), _t([[1.6, 2.48], [-1.04, 0.96]]).view(1, 2, 1, 2))


def test_conv1x1_per_tensor_weights_use_one_scale():
    # The same conv per tensor: max|W| = 2.55 -> one scale 50: W_q = [[63.75 -> 64, -25.5 -> -26 (tie, even)], ...]
    # Only the scales are checked here (the tie makes the second integer float-noise dependent).
    conv = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(_t([[1.275, -0.51], [0.2, 2.55]]).view(2, 2, 1, 1))
    w = RangeLinearQuantParamLayerWrapper(conv, 8, 8, mode=SYM, per_channel_wts=False, activation_stats=SYM_STATS)
    assert w.w_scale.dim() == 0 and float(w.w_scale) == 50.0
    assert float(conv.weight.data.view(2, 2)[0, 0]) == 64.0


def test_linear_symmetric_clip_n_std():
    # N_STD, n = 3: range [max(min, mean - 3 std), min(max, mean + 3 std)]
    #   input: min -1, max 3, mean 0.15, std 0.8 -> [max(-1, -2.25), min(3, 2.55)] = [-1, 2.55] -> sat 2.55, scale 50
    #   output: min -20, max 20, mean 0, std 3.4 -> [-10.2, 10.2] -> sat 10.2, scale 12.5
    # the scales of test_linear_symmetric_clip_none, hence its output
    stats = {
        "inputs": {0: {"min": -1.0, "max": 3.0, "mean": 0.15, "std": 0.8}},
        "output": {"min": -20.0, "max": 20.0, "mean": 0.0, "std": 3.4},
    }
    w = _sym_layer(activation_stats=stats, clip_acts=ClipMode.N_STD, clip_n_stds=3)
    # (0.15 + 3 * 0.8 is 2.5500002 in float32)
    assert (float(w.in0_scale), float(w.output_scale)) == (pytest.approx(50.0, rel=1e-6), pytest.approx(12.5))
    _close(w(_t([[1.0, -0.5], [2.0, 0.3]])), [[1.12, -0.24], [0.8, 2.96]])


def test_requantization_scale_approximated_by_multiplier_and_shift():
    # test_linear_symmetric_clip_none with a 4-bit multiplier: Q = 0.005 -> n = floor(log2(15 / 0.005)) = 11,
    # A = floor(2048 * 0.005) = 10: Q ~ 10 / 2048 = 0.0048828125
    #   accum [[2750, -675], [2000, 7405]] * Q = [[13.43 -> 13, -3.30 -> -3], [9.77 -> 10, 36.16 -> 36]]
    #   out = out_q / 12.5 = [[1.04, -0.24], [0.8, 2.88]]
    w = _sym_layer(scale_approx_mult_bits=4)
    _close(w(_t([[1.0, -0.5], [2.0, 0.3]])), [[1.04, -0.24], [0.8, 2.88]])


def test_accumulator_is_clamped_to_its_bits():
    # test_linear_symmetric_clip_none with a 12-bit accumulator [-2048, 2047]:
    #   accum [[2750, -675], [2000, 7405]] -> [[2047, -675], [2000, 2047]]
    #   out_q = round(0.005 accum) = [[10.235 -> 10, -3], [10, 10]] -> out = out_q / 12.5 = [[0.8, -0.24], [0.8, 0.8]]
    w = _sym_layer(num_bits_accum=12)
    _close(w(_t([[1.0, -0.5], [2.0, 0.3]])), [[0.8, -0.24], [0.8, 0.8]])


def test_clip_half_range_symmetric_uses_the_unsigned_grid():
    # A fused ReLU: the output range [min, max] becomes [0, max] and, in a symmetric mode, the whole unsigned
    # grid [0, 255] with zero point 0: output scale = 255 / 5.1 = 50 (the original: 127.5 / 5.1 = 25 on [-128, 127]).
    # The input keeps its symmetric parameters (scale 50).
    stats = {"inputs": {0: _stat(-1.0, 2.55)}, "output": _stat(-3.0, 5.1)}
    w = _sym_layer(activation_stats=stats, clip_half_range=True)
    assert (float(w.output_scale), float(w.output_zero_point)) == (50.0, 0.0)
    assert float(w.in0_scale) == 50.0
    # x = [[1.0, -0.5], [2.0, 0.3]]: accum as in test_linear_symmetric_clip_none: [[2750, -675], [2000, 7405]]
    #   requant = 50 / 2500 = 0.02: out_q = clamp(round(0.02 accum), 0, 255) = [[55, -13.5 -> 0], [40, 148.1 -> 148]]
    #   out = out_q / 50 = [[1.1, 0.0], [0.8, 2.96]]
    out = w(_t([[1.0, -0.5], [2.0, 0.3]]))
    _close(out, [[1.1, 0.0], [0.8, 2.96]])
    assert (out.quant_metadata.min_q_val, out.quant_metadata.max_q_val) == (0, 255)


def test_clip_half_range_asymmetric_drops_the_negative_part():
    # Asymmetric unsigned with half range: output [-2.0, 8.2] -> [0, 8.2]: scale 255 / 8.2, zero point 0.
    w = RangeLinearQuantParamLayerWrapper(
        _linear(ASYM_W, ASYM_B), 8, 8, mode=ASYM_U, activation_stats=ASYM_STATS, clip_half_range=True
    )
    assert float(w.output_zero_point) == 0.0
    assert float(w.output_scale) == pytest.approx(255 / 8.2)


# ---------------------------------------------------------------------------------------------
# Dynamic mode, weights only, embedding
# ---------------------------------------------------------------------------------------------


def test_linear_dynamic_mode_takes_parameters_from_the_batch():
    # No statistics: input and output parameters come from the batch at hand.
    # W = SYM_W (scale 50, W_q = [[25, -50], [60, 127]]), b = [0.104, -1.26]
    # x = [[1.0, -0.4], [2.55, 0.3]]: max|x| = 2.55 -> input scale 50; q_x = [[50, -20], [127.5 -> 127, 15]]
    #   accum_scale = 2500; bias_q = round(2500 * [0.104, -1.26]) = [260, -3150]
    #   row 0 = [50*25 + 20*50, 50*60 - 20*127] + bias = [2250, 460] + [260, -3150] = [2510, -2690]
    #   row 1 = [127*25 - 15*50, 127*60 + 15*127] + bias = [2425, 9525] + [260, -3150] = [2685, 6375]
    #   float accum = accum / 2500 -> max| | = 6375 / 2500 = 2.55 -> output scale 127.5 / 2.55 = 50
    #   requant = 50 / 2500 = 0.02: out_q = [[50.2 -> 50, -53.8 -> -54], [53.7 -> 54, 127.5 -> 127 (clamped)]]
    #   out = out_q / 50 = [[1.0, -1.08], [1.08, 2.54]]
    w = RangeLinearQuantParamLayerWrapper(_linear(SYM_W, [0.104, -1.26]), 8, 8, mode=SYM).eval()
    assert not w.preset_act_qparams
    assert not hasattr(w, "output_scale") and not hasattr(w, "in0_scale")
    out = w(_t([[1.0, -0.4], [2.55, 0.3]]))
    _close(out, [[1.0, -1.08], [1.08, 2.54]])
    assert float(out.quant_metadata.scale) == 50.0
    # The first row alone has other parameters: input scale 127.5 / 1.0, another output scale.
    alone = w(_t([[1.0, -0.4]]))
    assert float(alone.quant_metadata.scale) != 50.0


def test_weights_only_linear_keeps_activations_float():
    # W = SYM_W -> scale 50, W_q = [[25, -50], [60, 127]] -> dequantized [[0.5, -1.0], [1.2, 2.54]]
    # out = x W^T + b in float: x = [[1.0, -0.5], [2.0, 0.3]]
    #   row 0 = [0.5 + 0.5 + 0.1, 1.2 - 1.27 - 0.2] = [1.1, -0.27]
    #   row 1 = [1.0 - 0.3 + 0.1, 2.4 + 0.762 - 0.2] = [0.8, 2.962]
    w = WeightsOnlyQuantWrapper(_linear(SYM_W, SYM_B), 8, SYM).eval()
    assert torch.equal(w.wrapped_module.weight.data, _t([[0.5, -1.0], [1.2, 2.54]]))
    out = w(_t([[1.0, -0.5], [2.0, 0.3]]))
    _close(out, [[1.1, -0.27], [0.8, 2.962]])
    assert getattr(out, "quant_metadata", None) is None


def test_weights_only_through_the_quantizer():
    model = nn.Sequential(_linear(SYM_W, SYM_B))
    q = PostTrainLinearQuantizer(model, bits_activations=None, bits_parameters=8)
    prepared = q.prepare_model(torch.zeros(1, 2))
    wrapped = prepared.get_submodule("0")
    assert isinstance(wrapped, WeightsOnlyQuantWrapper)
    _close(prepared(_t([[1.0, -0.5], [2.0, 0.3]])), [[1.1, -0.27], [0.8, 2.962]])


def test_embedding_wrapper_returns_dequantized_rows_with_the_table_parameters():
    # table [[0.5, -1.0], [1.2, 2.55], [0.0, 0.3]]: sat 2.55 -> scale 50
    #   table_q = [[25, -50], [60, 127], [0, 15]] -> rows dequantized: [0, 0.3], [1.2, 2.54]
    emb = nn.Embedding(3, 2)
    with torch.no_grad():
        emb.weight.copy_(_t([[0.5, -1.0], [1.2, 2.55], [0.0, 0.3]]))
    w = RangeLinearEmbeddingWrapper(emb, 8, SYM).eval()
    assert torch.equal(emb.weight.data, _t([[25, -50], [60, 127], [0, 15]]))
    out = w(torch.tensor([2, 1]))
    _close(out, [[0.0, 0.3], [1.2, 2.54]])
    meta = out.quant_metadata
    assert (float(meta.scale), float(meta.zero_point), meta.min_q_val, meta.max_q_val) == (50.0, 0.0, -128, 127)


# ---------------------------------------------------------------------------------------------
# Element-wise add / multiply, concatenation (two inputs with different scales)
# ---------------------------------------------------------------------------------------------

# Symmetric: input 0 sat 2.55 -> scale 50; input 1 sat 5.1 -> scale 25.
# x0 = [1.0, -0.42, 2.0, 3.0] -> q0 = round(50 x0) = [50, -21, 100, 150 -> 127]
# x1 = [0.32, 2.0, -1.4, -6.0] -> q1 = round(25 x1) = [8, 50, -35, -150 -> -128]
X0 = [1.0, -0.42, 2.0, 3.0]
X1 = [0.32, 2.0, -1.4, -6.0]
TWO_INPUT_STATS = {0: _stat(-1.0, 2.55), 1: _stat(-5.1, 1.0)}


def test_eltwise_add_rescales_inputs_to_the_output_scale():
    # output sat 6.375 -> scale 127.5 / 6.375 = 20; input 0 -> 20/50 = 0.4, input 1 -> 20/25 = 0.8
    # The rescaled inputs are added unrounded and the sum is rounded once (as ONNX Runtime's QLinearAdd;
    # the original rounded each rescaled input first, which gives -51 in the last element):
    #   q0 * 0.4 = [20, -8.4, 40, 50.8]; q1 * 0.8 = [6.4, 40, -28, -102.4]
    #   sum = [26.4, 31.6, 12, -51.6] -> [26, 32, 12, -52] -> out = sum / 20 = [1.3, 1.6, 0.6, -2.6]
    #   (float: [1.32, 1.58, 0.6, -3.0]; the last inputs were clipped)
    stats = {"inputs": TWO_INPUT_STATS, "output": _stat(-6.375, 6.0)}
    w = RangeLinearQuantEltwiseAddWrapper(EltwiseAdd(), 8, mode=SYM, activation_stats=stats).eval()
    assert (float(w.in0_scale), float(w.in1_scale), float(w.output_scale)) == (50.0, 25.0, 20.0)
    out = w(_t(X0), _t(X1))
    _close(out, [1.3, 1.6, 0.6, -2.6])
    assert float(out.quant_metadata.scale) == 20.0


def test_eltwise_add_input_from_output_and_auto_fallback():
    # Input 1 quantized with the output's parameters (scale 20) instead of its own statistics:
    #   round(20 x1) = [6.4 -> 6, 40, -28, -120]; rescale factor 1
    #   q0 * 0.4 = [20, -8.4, 40, 50.8] (as above); sum = [26, 31.6, 12, -69.2] -> [26, 32, 12, -69]
    #   out = sum / 20 = [1.3, 1.6, 0.6, -3.45]
    # The same happens when input 1 has no statistics (auto fallback); without fallback it is an error.
    expected = [1.3, 1.6, 0.6, -3.45]
    stats = {"inputs": TWO_INPUT_STATS, "output": _stat(-6.375, 6.0)}
    w = RangeLinearQuantEltwiseAddWrapper(
        EltwiseAdd(), 8, mode=SYM, activation_stats=stats, input_overrides={1: {"from_output": True}}
    ).eval()
    assert not hasattr(w, "in1_scale")
    _close(w(_t(X0), _t(X1)), expected)
    only_input_0 = {"inputs": {0: TWO_INPUT_STATS[0]}, "output": _stat(-6.375, 6.0)}
    fallback = RangeLinearQuantEltwiseAddWrapper(EltwiseAdd(), 8, mode=SYM, activation_stats=only_input_0).eval()
    _close(fallback(_t(X0), _t(X1)), expected)
    strict = RangeLinearQuantEltwiseAddWrapper(
        EltwiseAdd(), 8, mode=SYM, activation_stats=only_input_0, inputs_quant_auto_fallback=False
    ).eval()
    with pytest.raises(QuantizationError, match="input 1"):
        strict(_t(X0), _t(X1))


def test_eltwise_mult_multiplies_the_integers():
    # accum_scale = 50 * 25 = 1250; products q0 q1 = [400, -1050, -3500, 127 * -128 = -16256]
    # output sat 5.1 -> scale 25; requant = 25 / 1250 = 0.02: [8, -21, -70, -325.12 -> -128 (clamped)]
    # out = out_q / 25 = [0.32, -0.84, -2.8, -5.12]   (float: [0.32, -0.84, -2.8, -18.0])
    stats = {"inputs": TWO_INPUT_STATS, "output": _stat(-5.1, 5.1)}
    w = RangeLinearQuantEltwiseMultWrapper(EltwiseMult(), 8, mode=SYM, activation_stats=stats).eval()
    _close(w(_t(X0), _t(X1)), [0.32, -0.84, -2.8, -5.12])


def test_concat_asymmetric_with_zero_points():
    # Asymmetric unsigned, dim 1.
    #   input 0 [-0.5, 4.6]: scale 50, zp -25; x0 = [1.0, -0.42] -> q0 = round(50 x0 + 25) = [75, 4];
    #     q0 + zp = [50, -21]
    #   input 1 [-2.0, 8.2]: scale 25, zp -50; x1 = [0.32, -1.4] -> q1 = round(25 x1 + 50) = [58, 15];
    #     q1 + zp = [8, -35]
    #   output [-3.0, 9.75]: scale 255 / 12.75 = 20, zp = round(20 * -3.0) = -60
    #   rescaled: [50, -21] * 0.4 = [20, -8.4]; [8, -35] * 0.8 = [6.4, -28]
    #   joined and rounded [20, -8, 6, -28] -> out_q = joined + 60 = [80, 52, 66, 32] -> out = (out_q - 60) / 20
    #   out = [1.0, -0.4, 0.3, -1.4]
    stats = {"inputs": {0: _stat(-0.5, 4.6), 1: _stat(-2.0, 8.2)}, "output": _stat(-3.0, 9.75)}
    w = RangeLinearQuantConcatWrapper(Concat(dim=1), 8, mode=ASYM_U, activation_stats=stats).eval()
    assert (float(w.output_scale), float(w.output_zero_point)) == (20.0, -60.0)
    out = w(_t([[1.0, -0.42]]), _t([[0.32, -1.4]]))
    _close(out, [[1.0, -0.4, 0.3, -1.4]])


def test_inputs_use_the_metadata_of_a_quantized_producer():
    # The add's input 0 comes from test_linear_symmetric_clip_none's layer: output [[1.12, -0.24], [0.8, 2.96]],
    # metadata scale 12.5 -> its integers [[14, -3], [10, 37]] are used as they are (not re-quantized with the
    # add's own in0 statistics, here deliberately different: sat 1.0 -> 127.5).
    # input 1 (no metadata): sat 5.1 -> scale 25; x1 = [[0.32, 2.0], [-1.4, 0.0]] -> q1 = [[8, 50], [-35, 0]]
    # output sat 6.375 -> scale 20: input 0 * 20/12.5 = 1.6: [[22.4, -4.8], [16, 59.2]]
    #   input 1 * 0.8: [[6.4, 40], [-28, 0]]; sum = [[28.8, 35.2], [-12, 59.2]] -> [[29, 35], [-12, 59]]
    #   out = sum / 20 = [[1.45, 1.75], [-0.6, 2.95]]
    linear = _sym_layer()
    stats = {"inputs": {0: _stat(-1.0, 1.0), 1: _stat(-5.1, 1.0)}, "output": _stat(-6.375, 6.0)}
    add = RangeLinearQuantEltwiseAddWrapper(EltwiseAdd(), 8, mode=SYM, activation_stats=stats).eval()
    y = linear(_t([[1.0, -0.5], [2.0, 0.3]]))
    _close(add(y, _t([[0.32, 2.0], [-1.4, 0.0]])), [[1.45, 1.75], [-0.6, 2.95]])


# ---------------------------------------------------------------------------------------------
# Fake quantization (modules without an integer implementation) and pass-through modules
# ---------------------------------------------------------------------------------------------


def test_fake_quant_sigmoid():
    # Asymmetric unsigned. input [-5.1, 7.65]: scale 255 / 12.75 = 20, zp = round(20 * -5.1) = -102
    #   x = [0.0, 1.0, -2.0] -> q = round(20 x + 102) = [102, 122, 62] -> dequantized [0.0, 1.0, -2.0]
    #   sigmoid = [0.5, 0.7310586, 0.1192029]
    # output [0, 1.02]: scale 255 / 1.02 = 250, zp 0: q = round(250 s) = [125, 182.76 -> 183, 29.80 -> 30]
    # out = q / 250 = [0.5, 0.732, 0.12]
    stats = {"inputs": {0: _stat(-5.1, 7.65)}, "output": _stat(0.0, 1.02)}
    w = RangeLinearFakeQuantWrapper(nn.Sigmoid(), 8, mode=ASYM_U, activation_stats=stats).eval()
    _close(w(_t([0.0, 1.0, -2.0])), [0.5, 0.732, 0.12])


def test_fake_quant_avgpool():
    # Symmetric. input sat 2.55 -> scale 50: x = [1.0, -0.44, 3.0, 0.3] -> q = [50, -22, 150 -> 127, 15]
    #   dequantized [1.0, -0.44, 2.54, 0.3]; AvgPool1d(2) -> [0.28, 1.42]
    # output sat 2.55 -> scale 50: q = [14, 71] -> out = [0.28, 1.42]   (float: [0.28, 1.65]; 3.0 was clipped)
    stats = {"inputs": {0: _stat(-1.0, 2.55)}, "output": _stat(-2.55, 2.55)}
    w = RangeLinearFakeQuantWrapper(nn.AvgPool1d(2), 8, mode=SYM, activation_stats=stats).eval()
    out = w(_t([[[1.0, -0.44, 3.0, 0.3]]]))
    _close(out, [[[0.28, 1.42]]])
    assert float(out.quant_metadata.scale) == 50.0


@pytest.mark.parametrize("module", [nn.ReLU(), nn.MaxPool1d(2)], ids=["relu", "maxpool"])
def test_value_preserving_modules_keep_the_input_metadata(module):
    # After a quantized producer, ReLU / MaxPool run in float on the dequantized values (which stay on the
    # producer's grid) and pass its metadata on; their own statistics are not used.
    stats = {"inputs": {0: _stat(-100.0, 100.0)}, "output": _stat(-100.0, 100.0)}
    producer = _sym_layer()
    w = RangeLinearFakeQuantWrapper(module, 8, mode=SYM, activation_stats=stats).eval()
    y = producer(_t([[1.0, -0.5], [2.0, 0.3]]))  # [[1.12, -0.24], [0.8, 2.96]], scale 12.5
    out = w(y)  # MaxPool1d takes the (2, 2) tensor as 2 channels of length 2
    expected = [[1.12, 0.0], [0.8, 2.96]] if isinstance(module, nn.ReLU) else [[1.12], [2.96]]
    _close(out, expected)
    assert out.quant_metadata is y.quant_metadata


def test_maxpool_without_metadata_quantizes_its_input():
    # No producer metadata: the input is quantized with the statistics (sat 2.55 -> scale 50) and the output
    # with the output statistics (sat 1.275 -> scale 100). x = [1.0, -0.44, 3.0, 0.3]
    #   dequantized input [1.0, -0.44, 2.54, 0.3] -> max pool [1.0, 2.54] -> round(100 .) = [100, 254 -> 127]
    #   out = [1.0, 1.27]
    stats = {"inputs": {0: _stat(-1.0, 2.55)}, "output": _stat(-1.275, 1.0)}
    w = RangeLinearFakeQuantWrapper(nn.MaxPool1d(2), 8, mode=SYM, activation_stats=stats).eval()
    out = w(_t([[[1.0, -0.44, 3.0, 0.3]]]))
    _close(out, [[[1.0, 1.27]]])
    assert float(out.quant_metadata.scale) == 100.0


# ---------------------------------------------------------------------------------------------
# Evaluation only
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: _sym_layer(),
        lambda: RangeLinearQuantEltwiseAddWrapper(EltwiseAdd(), 8, activation_stats={"output": _stat(-1, 1)}),
        lambda: RangeLinearFakeQuantWrapper(nn.Sigmoid(), 8),
    ],
    ids=["linear", "add", "fake"],
)
def test_wrappers_raise_in_training_mode(make):
    w = make().train()
    inputs = (_t([[1.0, 0.0]]),) * (2 if isinstance(w, RangeLinearQuantEltwiseAddWrapper) else 1)
    with pytest.raises(QuantizationError, match="evaluation only"):
        w(*inputs)
