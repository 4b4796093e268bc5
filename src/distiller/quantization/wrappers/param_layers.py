"""Quantized convolutions and fully connected layers (weights, bias and activations).

Per the original: weights are quantized once, in place (optionally per output channel); the bias is
quantized to the accumulator's scale ``input_scale * weight_scale`` and added to the integer
accumulator, which is clamped to ``num_bits_accum`` signed bits and re-quantized to the output.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.linear import linear_dequantize, linear_quantize_clamp
from distiller.quantization.modes import ClipMode, LinearQuantMode, ModuleQuantMode
from distiller.quantization.onnx_ops import as_constant, dequantize_linear, onnx_qparams, quantize_to_int
from distiller.quantization.settings import QuantSettings, params_from_tensor
from distiller.quantization.wrappers.base import QuantizedInput, RangeLinearQuantWrapper

__all__ = [
    "PARAM_LAYER_TYPES",
    "deployed_weights",
    "RangeLinearQuantParamLayerWrapper",
    "WeightsOnlyQuantWrapper",
    "quantize_weights",
]

PARAM_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _channel_view(t: torch.Tensor, module: nn.Module, ndim: int) -> torch.Tensor:
    """Shape a per-output-channel vector to broadcast over the layer's output."""
    if t.dim() == 0:
        return t
    if isinstance(module, nn.Linear):
        return t
    shape = [1] * ndim
    shape[1] = -1
    return t.reshape(shape)


def _weight_view(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 0 else t.reshape([-1] + [1] * (weight.dim() - 1))


def quantize_weights(
    module: nn.Module, settings: QuantSettings, save_fp_weights: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``module.weight`` in place to integers; returns ``(w_scale, w_zero_point)``."""
    weight = module.weight.detach()
    if save_fp_weights:
        module.register_buffer("float_weight", weight.clone())
    scale, zp = params_from_tensor(settings, weight, per_dim=0 if settings.per_channel else None)
    low, high = settings.q_range
    module.weight.data = linear_quantize_clamp(weight, _weight_view(scale, weight), _weight_view(zp, weight), low, high)
    return scale, zp


def deployed_weights(
    weight_q: torch.Tensor, w_scale: torch.Tensor, w_zero_point: torch.Tensor, settings: QuantSettings
) -> torch.Tensor:
    """``DequantizeLinear`` of the weights stored as ``int8`` (ONNX Runtime's fast path on x86).

    Unsigned modes shift by ``-2^(bits-1)`` (exact); per-channel parameters use axis 0.
    """
    offset = -(2 ** (settings.num_bits - 1)) if settings.mode == LinearQuantMode.ASYMMETRIC_UNSIGNED else 0
    scale, zp = onnx_qparams(w_scale, w_zero_point, offset, torch.int8)
    if scale.dim() == 1 and zp.dim() == 0:
        zp = zp.expand_as(scale).contiguous()
    q = quantize_to_int(weight_q.detach(), w_zero_point, offset, torch.int8)
    return dequantize_linear(as_constant(q), as_constant(scale), as_constant(zp), axis=0)


def _weight_settings(
    num_bits: int, mode: LinearQuantMode, per_channel: bool, clip: ClipMode, clip_n_stds
) -> QuantSettings:  # noqa: ANN001
    return QuantSettings(num_bits, mode, clip, clip_n_stds, per_channel=per_channel)


class RangeLinearQuantParamLayerWrapper(RangeLinearQuantWrapper):
    """Conv1d/2d/3d or Linear computed on integers.

    Args (beyond :class:`RangeLinearQuantWrapper`'s):
        num_bits_params: weight bits.
        mode: a :class:`ModuleQuantMode` (activations and weights may differ).
        per_channel_wts: one scale per output channel.
        save_fp_weights: keep the float weights as buffer ``float_weight`` of the wrapped module.
        also_clip_weights: clip weights with the activations' clip mode (LAPQ).
    """

    def __init__(
        self,
        wrapped_module: nn.Module,
        num_bits_acts: int,
        num_bits_params: int,
        num_bits_accum: int = 32,
        mode: ModuleQuantMode | LinearQuantMode = LinearQuantMode.SYMMETRIC,
        clip_acts: ClipMode = ClipMode.NONE,
        per_channel_wts: bool = False,
        activation_stats: dict[str, Any] | None = None,
        clip_n_stds: float | None = None,
        clip_half_range: bool = False,
        scale_approx_mult_bits: int | None = None,
        input_overrides: dict[int, dict[str, Any]] | None = None,
        inputs_quant_auto_fallback: bool = True,
        save_fp_weights: bool = False,
        also_clip_weights: bool = False,
    ) -> None:
        if not isinstance(wrapped_module, PARAM_LAYER_TYPES):
            raise QuantizationError(
                f"{type(self).__name__} wraps Conv1d/2d/3d and Linear, not {type(wrapped_module).__name__}"
            )
        mode = mode if isinstance(mode, ModuleQuantMode) else ModuleQuantMode(mode, mode)
        super().__init__(
            wrapped_module,
            num_bits_acts,
            num_bits_accum,
            mode.activations,
            clip_acts,
            activation_stats,
            clip_n_stds,
            clip_half_range,
            scale_approx_mult_bits,
            input_overrides,
            inputs_quant_auto_fallback,
        )
        self.weight_settings = _weight_settings(
            num_bits_params,
            mode.weights,
            per_channel_wts,
            clip_acts if also_clip_weights else ClipMode.NONE,
            clip_n_stds,
        )
        self.save_fp_weights = save_fp_weights
        w_scale, w_zp = quantize_weights(wrapped_module, self.weight_settings, save_fp_weights)
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("w_zero_point", w_zp)

    @property
    def is_linear(self) -> bool:
        return isinstance(self.wrapped_module, nn.Linear)

    def _op(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        m = self.wrapped_module
        if self.is_linear:
            return F.linear(x, weight, bias)
        return m._conv_forward(x, weight, bias)

    def quantized_forward(self, inputs: list[QuantizedInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = inputs[0]
        m = self.wrapped_module
        accum_scale = x.scale * self.w_scale
        weight_int = m.weight + _weight_view(self.w_zero_point, m.weight)
        accum = self._op(x.q + x.zero_point, weight_int, None)
        accum_scale_b = _channel_view(accum_scale, m, accum.dim())
        if m.bias is not None:
            bias_q = linear_quantize_clamp(m.bias.detach(), accum_scale, 0, self.accum_min_q_val, self.accum_max_q_val)
            accum = accum + _channel_view(bias_q, m, accum.dim())
        accum = accum.clamp(self.accum_min_q_val, self.accum_max_q_val)
        out_scale, out_zp = self.output_params_for(linear_dequantize(accum, accum_scale_b, 0))
        w_scale_b = _channel_view(self.w_scale, m, accum.dim())
        return self.requantize(accum, [x.scale, w_scale_b], out_scale, out_zp), out_scale, out_zp

    def deploy_forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x = inputs[0]
        m = self.wrapped_module
        weight = deployed_weights(m.weight, self.w_scale, self.w_zero_point, self.weight_settings)
        bias = None
        if m.bias is not None:
            in_scale, _, _, _ = self._input_params(0, x)
            accum_scale = in_scale * self.w_scale
            bias_q = linear_quantize_clamp(m.bias.detach(), accum_scale, 0, self.accum_min_q_val, self.accum_max_q_val)
            b_scale = (1.0 / accum_scale.double()).float().expand_as(bias_q).contiguous()
            bias = dequantize_linear(
                as_constant(bias_q.round().to(torch.int32)),
                as_constant(b_scale),
                as_constant(torch.zeros_like(bias_q, dtype=torch.int32)),
                axis=0,
            )
        return self._op(x, weight, bias)

    def extra_repr(self) -> str:
        w = self.weight_settings
        return (
            f"{super().extra_repr()}, weights: mode={w.mode.name}, num_bits={w.num_bits}, per_channel={w.per_channel}"
        )


class WeightsOnlyQuantWrapper(nn.Module):
    """Weight-only quantization: weights quantized and dequantized, activations kept in float."""

    def __init__(
        self,
        wrapped_module: nn.Module,
        num_bits_params: int,
        mode: LinearQuantMode = LinearQuantMode.SYMMETRIC,
        per_channel_wts: bool = False,
        save_fp_weights: bool = False,
    ) -> None:
        super().__init__()
        self.wrapped_module = wrapped_module
        self.weight_settings = QuantSettings(num_bits_params, mode, per_channel=per_channel_wts)
        w_scale, w_zp = quantize_weights(wrapped_module, self.weight_settings, save_fp_weights)
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("w_zero_point", w_zp)
        w = wrapped_module.weight
        w.data = linear_dequantize(w.data, _weight_view(w_scale, w), _weight_view(w_zp, w))
        self.deploy = False

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.wrapped_module(*inputs)

    def extra_repr(self) -> str:
        w = self.weight_settings
        return f"weights only: mode={w.mode.name}, num_bits={w.num_bits}, per_channel={w.per_channel}"
