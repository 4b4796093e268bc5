"""Range-linear quantization: integer ranges, scale / zero-point, quantize and dequantize.

Distiller's convention, kept from the original because every stored statistic, checkpoint buffer
and test value uses it: the scale **multiplies** and the zero-point is **subtracted**::

    q = round(scale * x - zero_point)          x ~= (q + zero_point) / scale

PyTorch and ONNX use the reciprocal scale and the opposite zero-point sign (``q = round(x / S) + Z``);
:func:`distiller_qparams_to_pytorch` converts.

* Symmetric: ``scale = n / sat`` with ``sat = max|x|`` and ``n = (2^b - 1) / 2`` (full range: ``+-sat``
  maps to ``+-127.5``, so the grid ``[-128, 127]`` is used almost evenly) or ``n = 2^(b-1) - 1``
  (restricted: ``+-sat`` maps to ``+-127``); zero-point 0.
* Asymmetric: the range is widened to contain 0 (so that 0 is represented exactly, which zero padding
  and ReLU outputs need), ``scale = (2^b - 1) / (max - min)`` and ``zero_point = scale * min``, rounded
  to an integer by default, plus ``2^(b-1)`` for the signed grid.
* A range of width 0 gets scale 1, so that all-zero tensors quantize to 0 instead of dividing by 0.

Every function works elementwise on tensors: per-channel parameters are tensors of saturation values,
and the caller reshapes them to broadcast against the data (e.g. ``scale.view(-1, 1, 1, 1)`` for conv
weights). Parameters are always returned as tensors (0-dim for python-number inputs) on the device of
the tensor inputs.
"""

from __future__ import annotations

import torch

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization.modes import (
    LinearQuantMode,
    is_restricted,
    is_signed,
    is_symmetric,
    verify_linear_quant_mode,
)

__all__ = [
    "asymmetric_linear_quantization_params",
    "clamp",
    "distiller_qparams_to_pytorch",
    "get_quantized_range",
    "linear_dequantize",
    "linear_quantize",
    "linear_quantize_clamp",
    "quant_params_for_range",
    "quantized_range_of",
    "symmetric_linear_quantization_params",
]

TensorLike = torch.Tensor | float | int


def _check_bits(num_bits: int, least: int = 1) -> None:
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or num_bits < least:
        raise ConfigError(f"num_bits must be an integer >= {least}, got {num_bits!r}; use e.g. 8.")


def _as_float(value: TensorLike, device: torch.device | None = None) -> torch.Tensor:
    """``value`` as a floating tensor; integer tensors and python numbers become the default float dtype."""
    t = torch.as_tensor(value, device=device)
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _as_float_pair(a: TensorLike, b: TensorLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Two floating tensors of one dtype on one device (that of whichever is a tensor), broadcast together."""
    device = next((v.device for v in (a, b) if isinstance(v, torch.Tensor)), None)
    ta, tb = _as_float(a, device), _as_float(b, device)
    dtype = torch.promote_types(ta.dtype, tb.dtype)
    return torch.broadcast_tensors(ta.to(dtype), tb.to(dtype))


def _show(t: torch.Tensor) -> str:
    return f"{t.item():g}" if t.numel() == 1 else str(t.flatten()[:8].tolist())


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise QuantizationError(
            f"The {what} must be finite, got {_show(t)}; the statistics it came from contain inf or NaN."
        )


def get_quantized_range(num_bits: int, signed: bool = True, signed_restrict_qrange: bool = False) -> tuple[int, int]:
    """The ``(min, max)`` integers of a ``num_bits`` grid.

    Unsigned: ``[0, 2^b - 1]``; signed: ``[-2^(b-1), 2^(b-1) - 1]``; signed and restricted (the TensorFlow
    symmetric convention, Jacob et al. arXiv:1806.08342 section 2.2): ``[-(2^(b-1) - 1), 2^(b-1) - 1]``.
    ``signed_restrict_qrange`` is ignored for unsigned grids. 8 bits: 0..255, -128..127, -127..127.
    """
    _check_bits(num_bits)
    if not signed:
        return 0, 2**num_bits - 1
    qmax = 2 ** (num_bits - 1) - 1
    return (-qmax if signed_restrict_qrange else -qmax - 1), qmax


def quantized_range_of(num_bits: int, mode: LinearQuantMode | str) -> tuple[int, int]:
    """The integer range a :class:`LinearQuantMode` quantizes onto (unsigned only for ``ASYMMETRIC_UNSIGNED``)."""
    mode = verify_linear_quant_mode(mode)
    return get_quantized_range(num_bits, signed=is_signed(mode), signed_restrict_qrange=is_restricted(mode))


def symmetric_linear_quantization_params(
    num_bits: int, saturation_val: TensorLike, restrict_qrange: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point (always 0) quantizing ``[-saturation_val, saturation_val]``.

    ``scale = n / saturation_val`` with ``n = (2^b - 1) / 2``, or ``2^(b-1) - 1`` when ``restrict_qrange``
    (8 bits, saturation 4: 31.875, restricted 31.75). A saturation of 0 gives scale 1.

    Raises:
        QuantizationError: a negative or non-finite saturation value.
        ConfigError: a bad ``num_bits``.
    """
    _check_bits(num_bits, least=2 if restrict_qrange else 1)
    sat = _as_float(saturation_val)
    _check_finite(sat, "saturation value")
    if (sat < 0).any():
        raise QuantizationError(
            f"The saturation value must be >= 0, got {_show(sat)}; pass the largest absolute value of the range."
        )
    n = 2 ** (num_bits - 1) - 1 if restrict_qrange else (2**num_bits - 1) / 2
    scale = torch.where(sat == 0, torch.ones_like(sat), n / sat)
    return scale, torch.zeros_like(scale)


def asymmetric_linear_quantization_params(
    num_bits: int,
    saturation_min: TensorLike,
    saturation_max: TensorLike,
    integral_zero_point: bool = True,
    signed: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point quantizing ``[saturation_min, saturation_max]`` (widened to contain 0).

    ``scale = (2^b - 1) / (max - min)``; ``zero_point = scale * min``, rounded when ``integral_zero_point``,
    plus ``2^(b-1)`` when ``signed``. 8 bits, ``[-2, 6]``: scale 31.875, zero-point -64 (signed: 64).
    A range of width 0 gets scale 1.

    Raises:
        QuantizationError: ``saturation_min > saturation_max`` or a non-finite bound.
        ConfigError: a bad ``num_bits``.
    """
    _check_bits(num_bits)
    sat_min, sat_max = _as_float_pair(saturation_min, saturation_max)
    _check_finite(sat_min, "saturation minimum")
    _check_finite(sat_max, "saturation maximum")
    if (sat_min > sat_max).any():
        raise QuantizationError(
            f"saturation_min ({_show(sat_min)}) must not exceed saturation_max ({_show(sat_max)}); "
            "check that the arguments are not swapped."
        )
    sat_min = sat_min.clamp(max=0)
    sat_max = sat_max.clamp(min=0)
    diff = sat_max - sat_min
    scale = torch.where(diff == 0, torch.ones_like(diff), (2**num_bits - 1) / diff)
    zero_point = scale * sat_min
    if integral_zero_point:
        zero_point = zero_point.round()
    if signed:
        zero_point = zero_point + 2 ** (num_bits - 1)
    return scale, zero_point


def quant_params_for_range(
    num_bits: int, mode: LinearQuantMode | str, sat_min: TensorLike, sat_max: TensorLike
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero-point for the float range ``[sat_min, sat_max]`` under ``mode``.

    Symmetric modes quantize ``[-sat, sat]`` with ``sat = max(|sat_min|, |sat_max|)``; asymmetric modes
    quantize the range itself (signed grid for ``ASYMMETRIC_SIGNED``).
    """
    mode = verify_linear_quant_mode(mode)
    lo, hi = _as_float_pair(sat_min, sat_max)
    if is_symmetric(mode):
        return symmetric_linear_quantization_params(
            num_bits, torch.maximum(lo.abs(), hi.abs()), restrict_qrange=is_restricted(mode)
        )
    return asymmetric_linear_quantization_params(num_bits, lo, hi, signed=is_signed(mode))


def clamp(input: torch.Tensor, min: TensorLike, max: TensorLike, inplace: bool = False) -> torch.Tensor:
    """``input`` clamped to ``[min, max]`` (bounds may be tensors, e.g. per channel)."""
    if inplace:
        return input.clamp_(min, max)
    return torch.clamp(input, min, max)


def linear_quantize(
    input: torch.Tensor, scale: TensorLike, zero_point: TensorLike, inplace: bool = False
) -> torch.Tensor:
    """``round(scale * input - zero_point)``, not clamped (see :func:`linear_quantize_clamp`)."""
    if inplace:
        return input.mul_(scale).sub_(zero_point).round_()
    return torch.round(scale * input - zero_point)


def linear_quantize_clamp(
    input: torch.Tensor,
    scale: TensorLike,
    zero_point: TensorLike,
    clamp_min: TensorLike,
    clamp_max: TensorLike,
    inplace: bool = False,
) -> torch.Tensor:
    """:func:`linear_quantize`, then clamp onto the integer grid ``[clamp_min, clamp_max]``."""
    return clamp(linear_quantize(input, scale, zero_point, inplace), clamp_min, clamp_max, inplace)


def linear_dequantize(
    input: torch.Tensor, scale: TensorLike, zero_point: TensorLike, inplace: bool = False
) -> torch.Tensor:
    """``(input + zero_point) / scale``: back to the float value a quantized integer stands for."""
    if inplace:
        return input.add_(zero_point).div_(scale)
    return (input + zero_point) / scale


def _levels(num_bits: int, mode: LinearQuantMode) -> float:
    """The ``n`` in ``scale = n / range`` of ``mode``: how many steps span the (half) range."""
    if mode == LinearQuantMode.SYMMETRIC:
        return (2**num_bits - 1) / 2
    if mode == LinearQuantMode.SYMMETRIC_RESTRICTED:
        return 2 ** (num_bits - 1) - 1
    return 2**num_bits - 1


def distiller_qparams_to_pytorch(
    scale: TensorLike,
    zero_point: TensorLike,
    num_bits: int,
    mode: LinearQuantMode | str,
    dest_dtype: torch.dtype,
    reduce_range: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distiller's ``(scale, zero_point)`` as PyTorch's, for ``torch.quantize_per_tensor`` / ``_per_channel``.

    PyTorch quantizes ``q = round(x / S) + Z``, so ``S = 1 / scale`` and ``Z = shift - zero_point``, where
    ``shift`` moves Distiller's integer grid onto that of ``dest_dtype``: ``+2^(b-1)`` from a signed mode to
    ``torch.quint8``, ``-2^(b-1)`` from ``ASYMMETRIC_UNSIGNED`` to ``torch.qint8``, 0 otherwise. Non-integral
    zero-points are rounded (PyTorch's are integers).

    ``reduce_range`` (what PyTorch's fbgemm backend expects of activations) re-expresses the same float range
    on a grid one bit narrower: ``[0, 127]`` for ``quint8``, ``[-64, 63]`` for ``qint8`` at 8 bits (symmetric
    ranges use ``[-63, 63]`` around the zero-point, so that ``+sat`` needs no clamping).

    Returns:
        ``S`` (floating tensor, shape of ``scale``) and ``Z`` (int64 tensor).

    Raises:
        ConfigError: ``dest_dtype`` is not ``torch.quint8`` / ``torch.qint8``, or ``num_bits`` does not fit it.
    """
    mode = verify_linear_quant_mode(mode)
    if dest_dtype not in (torch.quint8, torch.qint8):
        raise ConfigError(f"dest_dtype must be torch.quint8 or torch.qint8, got {dest_dtype}.")
    _check_bits(num_bits)
    if num_bits > 8:
        raise ConfigError(f"{num_bits}-bit parameters do not fit {dest_dtype}; quantize with at most 8 bits.")
    scale, zero_point = _as_float_pair(scale, zero_point)
    if reduce_range:
        if num_bits < 3:
            raise ConfigError(f"reduce_range needs at least 3 bits, got {num_bits}.")
        # PyTorch does not clamp to the reduced grid, so the whole float range must land inside it:
        # symmetric ranges map to +-(2^(b-2) - 1) (+-63 at 8 bits), asymmetric ones to 2^(b-1) - 1 steps.
        reduced = 2 ** (num_bits - 2) - 1 if is_symmetric(mode) else 2 ** (num_bits - 1) - 1
        ratio = reduced / _levels(num_bits, mode)
        if not is_symmetric(mode):
            # Rescale the zero-point on the unsigned grid, then move it back onto the (narrower) signed one.
            offset = 2 ** (num_bits - 1) if is_signed(mode) else 0
            zero_point = ((zero_point - offset) * ratio).round() + offset / 2
        scale = scale * ratio
        num_bits -= 1
    half = 2 ** (num_bits - 1)
    dest_signed = dest_dtype == torch.qint8
    if is_symmetric(mode):
        zp_torch = torch.full_like(zero_point, 0 if dest_signed else half)
    else:
        shift = 0 if is_signed(mode) == dest_signed else (-half if dest_signed else half)
        zp_torch = shift - zero_point
    return 1.0 / scale, zp_torch.round().long()
