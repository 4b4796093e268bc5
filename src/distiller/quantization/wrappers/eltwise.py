"""Quantized element-wise add and multiply, concatenation and matrix multiplication.

Add and concat bring every input to the output's scale, add or join, and round once (as ONNX
Runtime's integer kernels do, so that simulation and deployment agree); multiply and matmul
multiply the integers, whose scale is the product of the inputs' scales, and re-quantize.
These are the original's wrappers; they wrap the helper modules of
:mod:`distiller.modules`, which :func:`~distiller.quantization.modularize` puts in place of
``x + y``, ``x * y``, ``torch.cat`` and ``torch.matmul`` written in a model's ``forward``.
"""

from __future__ import annotations

import functools

import torch

from distiller.quantization.linear import linear_dequantize
from distiller.quantization.wrappers.base import QuantizedInput, RangeLinearQuantWrapper, onnx_scale

__all__ = [
    "RangeLinearQuantConcatWrapper",
    "RangeLinearQuantEltwiseAddWrapper",
    "RangeLinearQuantEltwiseMultWrapper",
    "RangeLinearQuantMatmulWrapper",
]


def _dequantized(inputs: list[QuantizedInput]) -> list[torch.Tensor]:
    return [linear_dequantize(x.q, x.scale, x.zero_point) for x in inputs]


class _RescaleToOutput(RangeLinearQuantWrapper):
    """Inputs re-quantized to the output scale, then combined by ``combine``."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def quantized_forward(self, inputs: list[QuantizedInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out_scale, out_zp = self.output_params_for(self.combine(_dequantized(inputs)))
        # Each input brought to the output scale without rounding, the result rounded once, as ONNX
        # Runtime's QLinearAdd/QLinearConcat do (the original rounded every input first).
        accum = self.combine([(x.q + x.zero_point) * (onnx_scale(x.scale) / onnx_scale(out_scale)) for x in inputs])
        return self.requantize(accum, [out_scale], out_scale, out_zp), out_scale, out_zp

    def deploy_forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(inputs)


class RangeLinearQuantEltwiseAddWrapper(_RescaleToOutput):
    """``EltwiseAdd``: inputs rescaled to the output scale, added, rounded once."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return functools.reduce(torch.add, tensors)


class RangeLinearQuantConcatWrapper(_RescaleToOutput):
    """``Concat``: inputs rescaled to the output scale and joined along the module's ``dim``."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(tensors, dim=self.wrapped_module.dim)


class _MultiplyIntegers(RangeLinearQuantWrapper):
    """Integers multiplied; the accumulator's scale is the product of the input scales."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def quantized_forward(self, inputs: list[QuantizedInput]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        accum_scale = functools.reduce(torch.mul, [x.scale for x in inputs])
        accum = self.combine([x.q + x.zero_point for x in inputs]).clamp(self.accum_min_q_val, self.accum_max_q_val)
        out_scale, out_zp = self.output_params_for(linear_dequantize(accum, accum_scale, 0))
        return self.requantize(accum, [x.scale for x in inputs], out_scale, out_zp), out_scale, out_zp

    def deploy_forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return self.combine(inputs)


class RangeLinearQuantEltwiseMultWrapper(_MultiplyIntegers):
    """``EltwiseMult``: element-wise product of the integers."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return functools.reduce(torch.mul, tensors)


class RangeLinearQuantMatmulWrapper(_MultiplyIntegers):
    """``Matmul``/``BatchMatmul``: matrix product of the integers (two inputs)."""

    def combine(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        a, b = tensors
        return torch.matmul(a, b)
