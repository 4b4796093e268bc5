"""The two ONNX quantization operators, as PyTorch functions that export to themselves.

A quantized wrapper in deployment mode expresses its computation with ONNX's
``QuantizeLinear``/``DequantizeLinear`` around an ordinary float operator (the "QDQ" format that
ONNX Runtime fuses into integer kernels such as ``QLinearConv``). Each function below computes, in
PyTorch, exactly what its ONNX operator computes, and its ``symbolic`` emits that operator, so the
traced graph and the eager result agree.

ONNX convention (also PyTorch's): ``q = saturate(round(x / s) + zp)`` and ``x = (q - zp) * s``. The
scale and zero point arrive as tensors whose dtype fixes the integer type (``uint8``/``int8`` for
activations and weights, ``int32`` for biases). :func:`to_onnx_qparams` converts Distiller's
parameters (the scale multiplies, the zero point is subtracted) to this convention.
"""

from __future__ import annotations

import warnings

import torch

__all__ = ["as_constant", "dequantize_linear", "fake_quantize_linear", "onnx_qparams", "quantize_to_int"]

_INT_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.int32: (-(2**31), 2**31 - 1)}


def _broadcast(t: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    if t.dim() == 0:
        return t
    shape = [1] * like.dim()
    shape[axis] = -1
    return t.reshape(shape)


def as_constant(t: torch.Tensor) -> torch.Tensor:
    """A copy of ``t`` that the ONNX tracer records as a constant, not as ops on model buffers.

    ONNX Runtime fuses ``DequantizeLinear`` → operator → ``QuantizeLinear`` into an integer kernel
    only when scales, zero points and integer weights are constants of the graph.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.tensor(t.detach().cpu().tolist(), dtype=t.dtype)


def onnx_qparams(
    scale: torch.Tensor, zero_point: torch.Tensor, offset: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX ``(scale, zero_point)`` for Distiller's ``(scale, zero_point)``.

    ``offset`` moves the integers between Distiller's range and the ONNX type's (``+128`` when
    signed Distiller values are stored as ``uint8``, ``-128`` for unsigned values stored as ``int8``).
    """
    onnx_scale = (1.0 / scale.double()).float()
    onnx_zp = (-zero_point.double()).round() + offset
    low, high = _INT_RANGES[dtype]
    if bool(((onnx_zp < low) | (onnx_zp > high)).any()):
        raise ValueError(f"zero point {onnx_zp.tolist()} does not fit {dtype}")
    return onnx_scale, onnx_zp.to(dtype)


def quantize_to_int(q_values: torch.Tensor, zero_point: torch.Tensor, offset: int, dtype: torch.dtype) -> torch.Tensor:
    """Distiller's integer-valued tensor as an ONNX integer tensor (``q + offset``)."""
    low, high = _INT_RANGES[dtype]
    return (q_values.double() + offset).round().clamp(low, high).to(dtype)


class _FakeQuantizeLinear(torch.autograd.Function):
    """``DequantizeLinear(QuantizeLinear(x))`` with per-tensor parameters."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
        low, high = _INT_RANGES[zero_point.dtype]
        zp = zero_point.to(x.dtype)
        q = torch.clamp(torch.round(x / scale) + zp, low, high)
        return (q - zp) * scale

    @staticmethod
    def symbolic(g, x, scale, zero_point):  # noqa: ANN001, ANN205
        return g.op("DequantizeLinear", g.op("QuantizeLinear", x, scale, zero_point), scale, zero_point)


class _DequantizeLinear(torch.autograd.Function):
    """``DequantizeLinear(q)`` of an integer constant (weights, biases), per tensor or per ``axis``."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int) -> torch.Tensor:  # noqa: ANN001
        return (q.float() - _broadcast(zero_point, q, axis).float()) * _broadcast(scale, q, axis)

    @staticmethod
    def symbolic(g, q, scale, zero_point, axis):  # noqa: ANN001, ANN205
        return g.op("DequantizeLinear", q, scale, zero_point, axis_i=axis)


def fake_quantize_linear(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    """Quantize ``x`` to ``zero_point.dtype`` and back (ONNX semantics: divide, round half to even)."""
    return _FakeQuantizeLinear.apply(x, scale, zero_point)


def dequantize_linear(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, axis: int = 0) -> torch.Tensor:
    """``(q - zero_point) * scale`` of an integer tensor; exported as ``DequantizeLinear``."""
    return _DequantizeLinear.apply(q, scale, zero_point, axis)
