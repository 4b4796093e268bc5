"""Wrappers for modules without an integer implementation, and for embeddings.

* :class:`RangeLinearFakeQuantWrapper` runs any module in float on dequantized inputs and quantizes
  its output (pooling, activations, normalization that was not folded, ...), as the original did.
  Modules that only move or select values (max pooling, dropout, identity, flatten, a ReLU after a
  quantized tensor) keep their input's parameters: their output needs no new scale, and ONNX
  Runtime then runs them on the integers.
* :class:`FPWrapper` runs a module in another float precision (``fpq_module``) without quantization.
* :class:`RangeLinearEmbeddingWrapper` quantizes an embedding table; a lookup returns table rows, so
  the output keeps the table's parameters.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.linear import linear_dequantize, linear_quantize_clamp
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.settings import QuantSettings, TensorQuantMetadata
from distiller.quantization.wrappers.base import QuantizedInput, RangeLinearQuantWrapper, fake_quantize_activation
from distiller.quantization.wrappers.param_layers import deployed_weights, quantize_weights

__all__ = ["VALUE_PRESERVING_TYPES", "FPWrapper", "RangeLinearEmbeddingWrapper", "RangeLinearFakeQuantWrapper"]

#: Modules whose outputs are values of their input: they keep the input's quantization parameters.
VALUE_PRESERVING_TYPES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Flatten,
    nn.ReLU,
)


class RangeLinearFakeQuantWrapper(RangeLinearQuantWrapper):
    """Float computation on dequantized inputs; the output quantized (fake quantization)."""

    def __init__(self, wrapped_module: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(wrapped_module, *args, **kwargs)
        self.keeps_input_params = isinstance(wrapped_module, VALUE_PRESERVING_TYPES)

    def _passes_through(self, inputs: tuple[torch.Tensor, ...]) -> bool:
        return self.keeps_input_params and len(inputs) == 1 and getattr(inputs[0], "quant_metadata", None) is not None

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not self.training and self._passes_through(inputs):
            meta = inputs[0].quant_metadata
            if self.deploy:
                out = self.wrapped_module(inputs[0])
                settings = _settings_for_metadata(self.output_settings, meta)
                out = fake_quantize_activation(out, meta.scale, meta.zero_point, settings)
            else:
                out = self.wrapped_module(inputs[0])
            out.quant_metadata = meta
            return out
        return super().forward(*inputs)

    def quantized_forward(self, inputs: list[QuantizedInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fp_out = self.wrapped_module(*[linear_dequantize(x.q, x.scale, x.zero_point) for x in inputs])
        out_scale, out_zp = self.output_params_for(fp_out)
        low, high = self.output_settings.q_range
        return linear_quantize_clamp(fp_out, out_scale, out_zp, low, high), out_scale, out_zp

    def deploy_forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.wrapped_module(*inputs)


def _settings_for_metadata(settings: QuantSettings, meta: TensorQuantMetadata) -> QuantSettings:
    """Settings with the integer range of ``meta`` (which mode and bits produced it)."""
    low, high = meta.min_q_val, meta.max_q_val
    bits = int(high - low).bit_length()
    if low >= 0:
        mode = LinearQuantMode.ASYMMETRIC_UNSIGNED
    elif low == -high:
        mode = LinearQuantMode.SYMMETRIC_RESTRICTED
        bits = int(high).bit_length() + 1
    else:
        mode = LinearQuantMode.SYMMETRIC
    return settings.with_(num_bits=bits, mode=mode)


class FPWrapper(nn.Module):
    """Run a module in ``float16``/``float32``/``float64`` (``fpq_module``), returning float32."""

    _DTYPES = {16: torch.float16, 32: torch.float32, 64: torch.float64}

    def __init__(self, wrapped_module: nn.Module, precision: int) -> None:
        super().__init__()
        if precision not in self._DTYPES:
            raise QuantizationError(f"fpq_module must be 16, 32 or 64, not {precision}")
        self.precision = precision
        self.wrapped_module = wrapped_module.to(self._DTYPES[precision])
        self.deploy = False

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        dtype = self._DTYPES[self.precision]
        if self.deploy:  # ONNX Runtime runs the exported float32 operator
            return self.wrapped_module.float()(*inputs)
        cast = [x.to(dtype) if torch.is_floating_point(x) else x for x in inputs]
        return self.wrapped_module(*cast).float()

    def extra_repr(self) -> str:
        return f"precision=float{self.precision}"


class RangeLinearEmbeddingWrapper(nn.Module):
    """An embedding table quantized (per tensor); outputs carry the table's parameters."""

    def __init__(
        self,
        wrapped_module: nn.Embedding,
        num_bits_params: int,
        mode: LinearQuantMode = LinearQuantMode.SYMMETRIC,
        save_fp_weights: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(wrapped_module, nn.Embedding):
            raise QuantizationError(f"{type(self).__name__} wraps nn.Embedding, not {type(wrapped_module).__name__}")
        self.wrapped_module = wrapped_module
        self.weight_settings = QuantSettings(num_bits_params, mode)
        w_scale, w_zp = quantize_weights(wrapped_module, self.weight_settings, save_fp_weights)
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("w_zero_point", w_zp)
        self.deploy = False

    def forward(self, indices: torch.Tensor) -> torch.Tensor:
        m = self.wrapped_module
        if self.deploy:
            table = deployed_weights(m.weight, self.w_scale, self.w_zero_point, self.weight_settings)
        else:
            table = linear_dequantize(m.weight, self.w_scale, self.w_zero_point)
        out = F.embedding(indices, table, m.padding_idx, m.max_norm, m.norm_type, m.scale_grad_by_freq, m.sparse)
        out.quant_metadata = TensorQuantMetadata(self.w_scale, self.w_zero_point, *self.weight_settings.q_range)
        return out

    def extra_repr(self) -> str:
        s = self.weight_settings
        return f"weights: mode={s.mode.name}, num_bits={s.num_bits}"
