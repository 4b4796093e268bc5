"""PyTorch-native quantized pieces used by the torch.ao conversion: quantized tensors from Distiller's
parameters, and functional add/mul/cat/matmul modules over ``nnq.FloatFunctional``.
"""

from __future__ import annotations

import torch
import torch.ao.nn.quantized as nnq
from torch import nn

from distiller.errors import QuantizationError
from distiller.quantization.linear import distiller_qparams_to_pytorch
from distiller.quantization.modes import LinearQuantMode, verify_linear_quant_mode

__all__ = [
    "distiller_quantized_tensor_to_pytorch",
    "QFunctionalAdd",
    "QFunctionalMul",
    "QFunctionalCat",
    "QFunctionalMatmul",
]

_INT_DTYPES = {torch.quint8: (torch.uint8, 0, 255), torch.qint8: (torch.int8, -128, 127)}


# -- tensors --------------------------------------------------------------------------------------
def distiller_quantized_tensor_to_pytorch(
    tensor: torch.Tensor,
    scale: torch.Tensor | float,
    zero_point: torch.Tensor | float,
    num_bits: int,
    mode: LinearQuantMode | str,
    dest_dtype: torch.dtype,
    per_channel: bool = False,
    axis: int = 0,
) -> torch.Tensor:
    """A tensor of Distiller integers (``linear_quantize_clamp``'s result) as a PyTorch quantized tensor.

    The integers are moved onto ``dest_dtype``'s grid (``+128`` from signed Distiller values to ``quint8``,
    ``-128`` from ``ASYMMETRIC_UNSIGNED`` to ``qint8``) and the parameters converted with
    :func:`~distiller.quantization.linear.distiller_qparams_to_pytorch`, so ``result.dequantize()`` equals
    Distiller's ``linear_dequantize(tensor, scale, zero_point)`` (up to float rounding).

    Args:
        tensor: integer-valued float tensor.
        scale, zero_point: Distiller's parameters (per channel: 1-D tensors along ``axis``).
        num_bits: the bits it was quantized with (at most 8).
        mode: the :class:`LinearQuantMode` (or its name) it was quantized with.
        dest_dtype: ``torch.quint8`` or ``torch.qint8``.
        per_channel: the parameters are per channel (along ``axis``).
        axis: the channel dimension.

    Raises:
        QuantizationError: the tensor is not integer-valued, does not fit ``dest_dtype``, or the parameters'
            shape does not match ``per_channel``.
        ConfigError: an unsupported ``dest_dtype`` or ``num_bits`` (from ``distiller_qparams_to_pytorch``).
    """
    mode = verify_linear_quant_mode(mode)
    scale = torch.as_tensor(scale, dtype=torch.float32).detach().cpu()
    zero_point = torch.as_tensor(zero_point, dtype=torch.float32).detach().cpu()
    scale_pt, zp_pt = distiller_qparams_to_pytorch(scale, zero_point, num_bits, mode, dest_dtype)
    t = tensor.detach().cpu().double()
    if not bool(torch.equal(t, t.round())):
        raise QuantizationError(
            "distiller_quantized_tensor_to_pytorch: the tensor is not integer-valued; pass the output of "
            "linear_quantize_clamp (the quantized integers), not float values."
        )
    multi = scale_pt.numel() > 1 or zero_point.numel() > 1
    if multi and not per_channel:
        raise QuantizationError(
            f"distiller_quantized_tensor_to_pytorch: {scale_pt.numel()} scales given for a per-tensor "
            "conversion; pass per_channel=True (and the channel axis)."
        )
    int_dtype, low, high = _INT_DTYPES[dest_dtype]
    # Distiller: x = (q + zp) / s; PyTorch: x = (q' - Z) * S with S = 1/s, so q' = q + zp + Z.
    offset = (zp_pt.double() + zero_point.double().round()).flatten()
    if per_channel and multi:
        channels = t.shape[axis]
        if scale_pt.numel() not in (1, channels) or offset.numel() not in (1, channels):
            raise QuantizationError(
                f"distiller_quantized_tensor_to_pytorch: {scale_pt.numel()} scales for {channels} channels "
                f"along axis {axis}."
            )
        shape = [1] * t.dim()
        shape[axis] = -1
        q = t + offset.expand(channels).reshape(shape)
    else:
        q = t + offset.reshape(())
    if bool(((q < low) | (q > high)).any()):
        raise QuantizationError(
            f"distiller_quantized_tensor_to_pytorch: values outside {dest_dtype}'s range [{low}, {high}] after "
            f"the zero-point shift; check num_bits ({num_bits}) and mode ({mode.name})."
        )
    q = q.to(int_dtype)
    if per_channel and multi:
        channels = t.shape[axis]
        scales = scale_pt.flatten().double().expand(channels).contiguous()
        zps = zp_pt.flatten().long().expand(channels).contiguous()
        return torch._make_per_channel_quantized_tensor(q, scales, zps, axis)
    return torch._make_per_tensor_quantized_tensor(q, float(scale_pt.reshape(())), int(zp_pt.reshape(())))


def _infer_mode(zero_point: torch.Tensor, low: int, high: int) -> tuple[int, LinearQuantMode]:
    """Bits and mode of an activation grid ``[low, high]`` (as :class:`TensorQuantMetadata` describes it)."""
    low, high = int(low), int(high)
    if low >= 0:
        return (high - low).bit_length(), LinearQuantMode.ASYMMETRIC_UNSIGNED
    if low == -high:
        return high.bit_length() + 1, LinearQuantMode.SYMMETRIC_RESTRICTED
    bits = (high - low).bit_length()
    if bool((zero_point == 0).all()):
        return bits, LinearQuantMode.SYMMETRIC
    return bits, LinearQuantMode.ASYMMETRIC_SIGNED


def _activation_qparams(
    scale: torch.Tensor, zero_point: torch.Tensor, low: int, high: int, reduce_range: bool
) -> tuple[float, int]:
    """PyTorch ``quint8`` ``(scale, zero_point)`` of an activation quantized by Distiller onto ``[low, high]``."""
    scale = torch.as_tensor(scale).detach().cpu().float()
    zero_point = torch.as_tensor(zero_point).detach().cpu().float()
    if scale.numel() != 1:
        raise QuantizationError("per-channel activation parameters cannot be converted to PyTorch's quint8 tensors")
    bits, mode = _infer_mode(zero_point, low, high)
    s, z = distiller_qparams_to_pytorch(
        scale.reshape(()), zero_point.reshape(()), bits, mode, torch.quint8, reduce_range=reduce_range and bits == 8
    )
    return float(s), int(z)


# -- quantized functional modules -----------------------------------------------------------------
class _QFunctionalModule(nn.Module):
    """An operation on quantized tensors whose output has fixed parameters (``nnq.QFunctional``)."""

    def __init__(self, scale: float, zero_point: int) -> None:
        super().__init__()
        self.qfunc = nnq.QFunctional()
        self.qfunc.scale = float(scale)
        self.qfunc.zero_point = int(zero_point)

    def extra_repr(self) -> str:
        return f"scale={self.qfunc.scale:g}, zero_point={self.qfunc.zero_point}"


class QFunctionalAdd(_QFunctionalModule):
    """Quantized ``x0 + x1 + ...`` (``add_relu`` for the last addition when ``relu``)."""

    def __init__(self, scale: float, zero_point: int, relu: bool = False) -> None:
        super().__init__(scale, zero_point)
        self.relu = relu

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for i, x in enumerate(inputs[1:], start=2):
            last = i == len(inputs)
            out = self.qfunc.add_relu(out, x) if self.relu and last else self.qfunc.add(out, x)
        return out

    def extra_repr(self) -> str:
        return super().extra_repr() + (", relu=True" if self.relu else "")


class QFunctionalMul(_QFunctionalModule):
    """Quantized ``x0 * x1 * ...``."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = self.qfunc.mul(out, x)
        return out


class QFunctionalCat(_QFunctionalModule):
    """Quantized ``torch.cat(inputs, dim)``."""

    def __init__(self, scale: float, zero_point: int, dim: int = 0) -> None:
        super().__init__(scale, zero_point)
        self.dim = dim

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.qfunc.cat(list(inputs), dim=self.dim)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, dim={self.dim}"


class QFunctionalMatmul(_QFunctionalModule):
    """Quantized ``torch.matmul(a, b)``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.qfunc.matmul(a, b)


# -- what runs on quantized tensors ---------------------------------------------------------------
# Modules that run on quantized tensors and only select or move values (output grid = input grid).
