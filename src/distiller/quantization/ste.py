"""Fake quantization with a straight-through gradient, for quantization-aware training.

Rounding has zero gradient almost everywhere, so training through it would stop learning. The
straight-through estimator (Bengio et al., arXiv:1308.3432) uses the quantized value in the forward pass
and treats the quantizer as the identity in the backward pass: the gradient reaches the float weights
unchanged. Scale and zero-point get no gradient (they come from statistics, not from the loss).
"""

from __future__ import annotations

from typing import Any

import torch

from distiller.quantization.linear import linear_dequantize, linear_quantize

__all__ = ["LinearQuantizeSTE", "linear_quantize_ste"]


class LinearQuantizeSTE(torch.autograd.Function):
    """``apply(input, scale, zero_point, dequantize, inplace)``: quantize (and dequantize) forward; identity back."""

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        scale: torch.Tensor | float,
        zero_point: torch.Tensor | float,
        dequantize: bool,
        inplace: bool,
    ) -> torch.Tensor:
        if inplace:
            ctx.mark_dirty(input)
        output = linear_quantize(input, scale, zero_point, inplace)
        if dequantize:
            output = linear_dequantize(output, scale, zero_point, inplace)
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return grad_output, None, None, None, None


def linear_quantize_ste(
    input: torch.Tensor,
    scale: torch.Tensor | float,
    zero_point: torch.Tensor | float,
    dequantize: bool = True,
    inplace: bool = False,
) -> torch.Tensor:
    """:class:`LinearQuantizeSTE` with keyword defaults: fake-quantize ``input`` (dequantized by default)."""
    return LinearQuantizeSTE.apply(input, scale, zero_point, dequantize, inplace)
