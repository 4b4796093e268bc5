"""Distiller's (scale, zero_point) converted to PyTorch's quantize the same way."""

from __future__ import annotations

import pytest
import torch

from distiller.errors import ConfigError
from distiller.quantization.linear import (
    distiller_qparams_to_pytorch,
    linear_dequantize,
    linear_quantize_clamp,
    quant_params_for_range,
    quantized_range_of,
)
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.ranges import get_tensor_min_max

pytestmark = pytest.mark.filterwarnings("ignore:.*quantized tensor creation functions:UserWarning")

T = torch.tensor


@pytest.mark.parametrize(
    "mode, dest, expected_zp",
    [
        # symmetric: zero-point 0, moved to the middle of the unsigned grid
        ("sym", torch.qint8, 0),
        ("sym", torch.quint8, 128),
        # asymmetric over [-2, 6]: Distiller zp -64 (unsigned) / 64 (signed)
        ("asym_u", torch.quint8, 64),
        ("asym_u", torch.qint8, -64),
        ("asym_s", torch.qint8, -64),
        ("asym_s", torch.quint8, 64),
    ],
)
def test_hand_values(mode, dest, expected_zp):
    scale, zp = quant_params_for_range(8, mode, -2.0, 6.0)
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest)
    assert scale_pt.item() == pytest.approx(1 / scale.item())
    assert zp_pt.dtype == torch.int64 and zp_pt.item() == expected_zp


def test_reduce_range_hand_values():
    # asym_u over [-2, 6]: scale 31.875 * 127 / 255 = 15.875; zp round(-64 * 127 / 255) = -32
    scale, zp = quant_params_for_range(8, "asym_u", -2.0, 6.0)
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, "asym_u", torch.quint8, reduce_range=True)
    assert (scale_pt.item(), zp_pt.item()) == (pytest.approx(1 / 15.875), 32)
    _, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, "asym_u", torch.qint8, reduce_range=True)
    assert zp_pt.item() == -32
    # sym over [-4, 4]: scale 31.875 * 63 / 127.5 = 15.75, so +-4 maps to +-63 around the zero-point
    scale, zp = quant_params_for_range(8, "sym", -4.0, 4.0)
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, "sym", torch.quint8, reduce_range=True)
    assert (scale_pt.item(), zp_pt.item()) == (pytest.approx(1 / 15.75), 64)


def _distiller_quantize(x, scale, zp, mode):
    qmin, qmax = quantized_range_of(8, mode)
    q = linear_quantize_clamp(x, scale, zp, qmin, qmax)
    return q, linear_dequantize(q, scale, zp)


def _check_same_quantization(q_torch, zp_pt, q_distiller, zp):
    """Both grids count steps from the float 0 (PyTorch: q - Z; Distiller: q + zp): compare those."""
    steps_torch = q_torch.int_repr().long() - zp_pt
    steps_distiller = (q_distiller + zp).round().long()
    # x * s and x / S round differently in the last bit, so a value on a rounding tie may land one step off
    assert (steps_torch - steps_distiller).abs().max() <= 1
    assert (steps_torch == steps_distiller).float().mean() > 0.95


@pytest.mark.parametrize("mode", list(LinearQuantMode))
@pytest.mark.parametrize("dest", [torch.quint8, torch.qint8])
def test_per_tensor_matches_torch(mode, dest):
    x = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 3 + 1
    scale, zp = quant_params_for_range(8, mode, x.min(), x.max())
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest)
    q = torch.quantize_per_tensor(x, scale_pt.item(), int(zp_pt.item()), dest)
    q_d, x_d = _distiller_quantize(x, scale, zp, mode)
    _check_same_quantization(q, zp_pt, q_d, zp)
    # the same dequantized values as Distiller's quantize -> dequantize, within one step
    assert ((q.dequantize() - x_d).abs() <= scale_pt * (1 + 1e-4)).all()


@pytest.mark.parametrize("mode", list(LinearQuantMode))
@pytest.mark.parametrize("dest", [torch.quint8, torch.qint8])
def test_reduce_range_fits_the_narrow_grid(mode, dest):
    x = torch.randn(500, generator=torch.Generator().manual_seed(0)) * 3 + 1
    scale, zp = quant_params_for_range(8, mode, x.min(), x.max())
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest, reduce_range=True)
    q = torch.quantize_per_tensor(x, scale_pt.item(), int(zp_pt.item()), dest)
    low, high = (0, 127) if dest == torch.quint8 else (-64, 63)
    assert low <= q.int_repr().min() and q.int_repr().max() <= high
    # nothing was clamped: every value is within half a (coarser) step
    assert ((q.dequantize() - x).abs() <= scale_pt / 2 * (1 + 1e-4)).all()
    _, x_d = _distiller_quantize(x, scale, zp, mode)
    assert ((q.dequantize() - x_d).abs() <= scale_pt * (1 + 1e-4)).all()


@pytest.mark.parametrize("mode", list(LinearQuantMode))
@pytest.mark.parametrize("dest", [torch.quint8, torch.qint8])
def test_per_channel_matches_torch(mode, dest):
    w = torch.randn(4, 50, generator=torch.Generator().manual_seed(1)) * T([[0.1], [1.0], [5.0], [0.01]])
    scale, zp = quant_params_for_range(8, mode, *get_tensor_min_max(w, per_dim=0))
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zp, 8, mode, dest)
    q = torch.quantize_per_channel(w, scale_pt, zp_pt, 0, dest)
    q_d, w_d = _distiller_quantize(w, scale.view(-1, 1), zp.view(-1, 1), mode)
    _check_same_quantization(q, zp_pt.view(-1, 1), q_d, zp.view(-1, 1))
    assert ((q.dequantize() - w_d).abs() <= scale_pt.view(-1, 1) * (1 + 1e-4)).all()


def test_errors():
    with pytest.raises(ConfigError, match="torch.quint8 or torch.qint8"):
        distiller_qparams_to_pytorch(1.0, 0.0, 8, "sym", torch.int8)
    with pytest.raises(ConfigError, match="16-bit"):
        distiller_qparams_to_pytorch(1.0, 0.0, 16, "sym", torch.qint8)
