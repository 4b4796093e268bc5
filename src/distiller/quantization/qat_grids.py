"""The integer grids a quantization-aware trained model computes on, and how PTQ reproduces them.

Activation grids (PACT/DoReFa/WRPN clipping, range-linear EMA ranges, LSQ steps) and weight grids
(DoReFa/PACT odd multiples of max|w|/(2^k-1) as (k+1)-bit restricted codes, WRPN, range-linear, LSQ),
folding a grid through BatchNorm, and pinning a prepared wrapper's integer weights to a grid. Used by
:mod:`distiller.quantization.qat_export`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.clipped_linear import (
    ClippedLinearQuantization,
    DorefaQuantizer,
    LearnedClippedLinearQuantization,
    PACTQuantizer,
    WRPNQuantizer,
)
from distiller.quantization.linear import quantized_range_of
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.quantizer import Quantizer
from distiller.quantization.range_linear_qat import (
    FakeLinearQuantization,
    FakeQuantizationWrapper,
    QuantAwareTrainRangeLinearQuantizer,
)

__all__ = [
    "ActivationGrid",
    "WeightGrid",
    "activation_grid",
    "float_module_of",
    "dorefa_weight_grid",
    "wrpn_weight_grid",
    "range_linear_weight_grid",
    "lsq_weight_grid",
    "weight_grid_of",
    "fold_weight_grid",
    "pin_weight_grid",
]

_ASYM_U = LinearQuantMode.ASYMMETRIC_UNSIGNED
_SYM = LinearQuantMode.SYMMETRIC
_SYM_RESTR = LinearQuantMode.SYMMETRIC_RESTRICTED
_MIN_CLIP = 1e-8  # PACT and LSQ clamp α / the step to this


# --- grids --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationGrid:
    """A QAT-quantized tensor's grid: ``num_bits`` in ``mode`` over ``[low, high]``.

    The post-training quantizer computes the same scale and zero point from statistics with
    ``min = low`` and ``max = high`` (:meth:`stats`).
    """

    num_bits: int
    mode: LinearQuantMode
    low: float
    high: float

    def stats(self) -> dict[str, float]:
        """A calibration-statistics entry whose range is this grid's."""
        return {"min": self.low, "max": self.high, "avg_min": self.low, "avg_max": self.high}


@dataclass(frozen=True)
class WeightGrid:
    """A layer's quantized weights: ``weight = (codes + zero_point) / scale`` (Distiller's convention).

    ``codes`` holds integers (in a float tensor of the weight's shape) within ``mode``'s ``num_bits``
    range; ``scale`` and ``zero_point`` are 0-dim (per tensor) or 1-D (per output channel).
    """

    codes: torch.Tensor
    scale: torch.Tensor
    zero_point: torch.Tensor
    num_bits: int
    mode: LinearQuantMode

    @property
    def per_channel(self) -> bool:
        return self.scale.dim() > 0

    @property
    def fits_int8(self) -> bool:
        """Whether the deployment's ``int8`` weights hold the codes (at most 8 bits)."""
        return self.num_bits <= 8

    def _view(self, t: torch.Tensor) -> torch.Tensor:
        return t if t.dim() == 0 else t.reshape([-1] + [1] * (self.codes.dim() - 1))

    def dequantize(self) -> torch.Tensor:
        return (self.codes + self._view(self.zero_point)) / self._view(self.scale)

    def residual(self, weight: torch.Tensor) -> float:
        """Largest distance of ``weight`` from this grid's values, in quantization steps."""
        if weight.numel() == 0:
            return 0.0
        q = weight.double() * self._view(self.scale).double() - self._view(self.zero_point).double()
        return float((q - self.codes.double()).abs().max())


def _grid_value(t: torch.Tensor) -> float:
    return float(t.detach().reshape(-1)[0])


def activation_grid(module: nn.Module) -> ActivationGrid | None:
    """The output grid of a QAT activation quantizer (``None`` for any other module).

    Raises:
        QuantizationError: the quantizer outputs integers (``dequantize=False``).
    """
    from distiller.quantization.lsq import LSQActivationQuantization, LSQWrapper

    if isinstance(module, (FakeQuantizationWrapper, LSQWrapper)):
        inner = module.fake_q if isinstance(module, FakeQuantizationWrapper) else module.act_quant
        return activation_grid(inner)
    if getattr(module, "dequantize", True) is False and isinstance(
        module,
        (
            LearnedClippedLinearQuantization,
            ClippedLinearQuantization,
            FakeLinearQuantization,
            LSQActivationQuantization,
        ),
    ):
        raise QuantizationError(
            f"{type(module).__name__} outputs integers (dequantize=False); only dequantizing QAT models convert"
        )
    if isinstance(module, LearnedClippedLinearQuantization):
        alpha = _grid_value(module.clip_val.detach().clamp_min(_MIN_CLIP))
        return ActivationGrid(module.num_bits, _ASYM_U, 0.0, alpha)
    if isinstance(module, ClippedLinearQuantization):
        return ActivationGrid(module.num_bits, _ASYM_U, 0.0, float(module.clip_val))
    if isinstance(module, FakeLinearQuantization):
        low, high = module.float_range()
        mode = _ASYM_U if module.half_range else module.mode
        return ActivationGrid(module.num_bits, mode, _grid_value(low), _grid_value(high))
    if isinstance(module, LSQActivationQuantization):
        step = module.step.detach().clamp_min(_MIN_CLIP).float()
        if module.signed:  # q ∈ [−2^(b−1), 2^(b−1) − 1]: Distiller's full symmetric grid with scale 1/s
            sat = _grid_value(step * ((2**module.num_bits - 1) / 2))
            return ActivationGrid(module.num_bits, _SYM, -sat, sat)
        return ActivationGrid(module.num_bits, _ASYM_U, 0.0, _grid_value(step * (2**module.num_bits - 1)))
    return None


def float_module_of(module: nn.Module) -> nn.Module:
    """The float module a QAT activation quantizer replaced (a ReLU) or wraps; other modules as they are."""
    from distiller.quantization.lsq import LSQActivationQuantization, LSQWrapper

    if isinstance(module, (FakeQuantizationWrapper, LSQWrapper)):
        return module.wrapped_module
    if isinstance(module, (LearnedClippedLinearQuantization, ClippedLinearQuantization, LSQActivationQuantization)):
        return nn.ReLU(inplace=bool(getattr(module, "inplace", False)))
    return module


def dorefa_weight_grid(weight: torch.Tensor, num_bits: int) -> WeightGrid:
    """DoReFa/PACT ``num_bits``-bit weights as a ``num_bits + 1``-bit ``SYMMETRIC_RESTRICTED`` grid.

    ``k``-bit DoReFa levels are ``S·(2i − n)/n`` (``n = 2^k − 1``, ``S = max|w|``), 1-bit ones ``±S``; the
    scale ``n/S`` (1-bit: ``1/S``) makes them the odd codes ``2i − n`` of ``[−n, n]`` and keeps pruned
    zeros at code 0. The scale is computed as the post-training quantizer computes it from the
    tensor's range (``(2^(b−1) − 1)/max|w|`` in float32), so its re-quantization gives these codes.
    """
    w = weight.detach()
    sat = w.abs().max()
    levels = 1 if num_bits == 1 else 2**num_bits - 1
    scale = torch.where(sat > 0, levels / sat, torch.ones_like(sat))
    codes = torch.round(w * scale)
    return WeightGrid(codes, scale, torch.zeros_like(scale), num_bits + 1, _SYM_RESTR)


def wrpn_weight_grid(weight: torch.Tensor, num_bits: int) -> WeightGrid:
    """WRPN ``num_bits``-bit weights (multiples of ``1/m`` in ``[−1, 1]``, ``m = 2^(k−1) − 1``): scale ``m``."""
    w = weight.detach()
    steps = 2 ** (num_bits - 1) - 1
    scale = torch.tensor(float(steps), dtype=w.dtype, device=w.device)
    return WeightGrid(torch.round(w * scale), scale, torch.zeros_like(scale), num_bits, _SYM_RESTR)


def range_linear_weight_grid(
    weight: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, num_bits: int, mode: LinearQuantMode
) -> WeightGrid:
    """Range-linear QAT weights with the layer's ``weight_scale`` / ``weight_zero_point`` buffers.

    Per-channel buffers (shaped to broadcast against the weight) become 1-D.
    """
    w = weight.detach()
    qmin, qmax = quantized_range_of(num_bits, mode)
    codes = torch.clamp(torch.round(scale * w - zero_point), qmin, qmax)
    if scale.numel() > 1:
        scale, zero_point = scale.reshape(-1), zero_point.reshape(-1)
    else:
        scale, zero_point = scale.reshape(()), zero_point.reshape(())
    return WeightGrid(codes, scale.detach().clone(), zero_point.detach().clone(), num_bits, mode)


def lsq_weight_grid(weight: torch.Tensor, step: torch.Tensor, num_bits: int) -> WeightGrid:
    """LSQ weights ``q·s`` (``q ∈ [−2^(k−1), 2^(k−1) − 1]``): ``SYMMETRIC`` with scale ``1/s``."""
    w = weight.detach()
    s = step.detach().clamp_min(_MIN_CLIP).to(w.dtype)
    qmin, qmax = quantized_range_of(num_bits, _SYM)
    codes = torch.clamp(torch.round(w / s), qmin, qmax)
    scale = (1.0 / s).reshape(-1) if s.numel() > 1 else (1.0 / s).reshape(())
    return WeightGrid(codes, scale, torch.zeros_like(scale), num_bits, _SYM)


def weight_grid_of(quantizer: Quantizer, module: nn.Module, num_bits: int) -> WeightGrid:
    """The grid of ``module.weight`` (already holding the quantized values) under ``quantizer``.

    Raises:
        QuantizationError: a quantizer type this conversion does not know.
    """
    from distiller.quantization.lsq import STEP_SUFFIX, LSQQuantizer

    weight = module.weight
    if isinstance(quantizer, (DorefaQuantizer, PACTQuantizer)):
        return dorefa_weight_grid(weight, num_bits)
    if isinstance(quantizer, WRPNQuantizer):
        return wrpn_weight_grid(weight, num_bits)
    if isinstance(quantizer, QuantAwareTrainRangeLinearQuantizer):
        return range_linear_weight_grid(
            weight, module.weight_scale, module.weight_zero_point, num_bits, quantizer.mode.weights
        )
    if isinstance(quantizer, LSQQuantizer):
        return lsq_weight_grid(weight, getattr(module, "weight" + STEP_SUFFIX), num_bits)
    raise QuantizationError(
        f"convert_qat_to_ptq does not know the weight grid of {type(quantizer).__name__}. Fix: convert models "
        "of DorefaQuantizer, PACTQuantizer, WRPNQuantizer, QuantAwareTrainRangeLinearQuantizer or LSQQuantizer."
    )


def fold_weight_grid(grid: WeightGrid, folded_weight: torch.Tensor) -> WeightGrid:
    """The per-channel grid of a layer after batch-norm folding multiplied output channel ``j`` by ``c_j``.

    ``c_j`` is measured (least squares of the folded against the grid's weights), so no folding formula
    is assumed. Channel ``j`` keeps its codes with scale ``scale/|c_j|``; a negative ``c_j`` mirrors the
    codes inside the integer range (``q → q_min + q_max − q``, zero point ``−zp − (q_min + q_max)``, so
    that ``q + zp`` changes sign); a channel folded to 0 gets codes ``−zp`` (the value 0).
    """
    channels = grid.codes.shape[0]
    before = grid.dequantize().reshape(channels, -1).double()
    after = folded_weight.detach().reshape(channels, -1).double()
    norm = (before * before).sum(dim=1)
    factor = torch.where(norm > 0, (before * after).sum(dim=1) / norm.clamp_min(1e-300), torch.ones_like(norm))
    scale = grid.scale.double().expand(channels).clone()
    zero_point = grid.zero_point.double().expand(channels).clone()
    codes = grid.codes.double().clone()
    qmin, qmax = quantized_range_of(grid.num_bits, grid.mode)
    view = [-1] + [1] * (codes.dim() - 1)
    negative = factor < 0
    codes = torch.where(negative.reshape(view), (qmin + qmax) - codes, codes)
    zero_point = torch.where(negative, -zero_point - (qmin + qmax), zero_point)
    dead = factor == 0
    codes = torch.where(dead.reshape(view), (-zero_point).reshape(view).expand_as(codes), codes)
    scale = torch.where(dead, scale, scale / factor.abs().clamp_min(1e-300))
    dtype = grid.scale.dtype
    return WeightGrid(
        codes.to(grid.codes.dtype), scale.to(dtype), zero_point.to(grid.zero_point.dtype), grid.num_bits, grid.mode
    )


def pin_weight_grid(wrapper: nn.Module, grid: WeightGrid) -> bool:
    """Set a post-training wrapper's integer weights, scale and zero point to ``grid``'s.

    Works on wrappers that keep integer weights in ``wrapped_module.weight`` with ``w_scale`` /
    ``w_zero_point`` buffers and ``weight_settings`` (conv/linear and embedding wrappers). Returns
    whether the wrapper's own quantization already was exactly ``grid`` (same codes, scales equal to
    a relative 1e-6).
    """
    weight = wrapper.wrapped_module.weight
    codes = grid.codes.to(device=weight.device, dtype=weight.dtype)
    scale = grid.scale.to(device=wrapper.w_scale.device, dtype=wrapper.w_scale.dtype)
    zero_point = grid.zero_point.to(device=wrapper.w_zero_point.device, dtype=wrapper.w_zero_point.dtype)
    same = (
        torch.equal(weight.detach(), codes)
        and _broadcast_close(wrapper.w_scale, scale, rtol=1e-6)
        and _broadcast_close(wrapper.w_zero_point, zero_point, rtol=0.0)
    )
    with torch.no_grad():
        weight.data = codes.clone()
    wrapper.w_scale = scale.clone()
    wrapper.w_zero_point = zero_point.clone()
    wrapper.weight_settings = wrapper.weight_settings.with_(
        num_bits=grid.num_bits, mode=grid.mode, per_channel=grid.per_channel
    )
    return same


def _broadcast_close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    try:
        a, b = torch.broadcast_tensors(a, b)
    except RuntimeError:
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=0.0))
