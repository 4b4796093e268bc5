"""Approximating a float scale by an integer multiplier and a right shift.

Integer-only hardware re-scales an accumulator by ``Q ~= A / 2^n``: multiply by the integer ``A``, then
shift right by ``n`` bits. For a multiplier of ``m`` bits the most precise choice is the largest ``n`` that
keeps ``A = floor(2^n * Q)`` within ``2^m - 1``::

    n = floor(log2((2^m - 1) / Q))        A = floor(2^n * Q)

e.g. ``Q = 0.3``, ``m = 8``: ``n = floor(log2(850)) = 9``, ``A = floor(153.6) = 153``, ``A / 2^n = 0.298828125``.

``limit=True`` caps the shift at ``m`` bits, as the original does: for a small ``Q`` the unlimited shift
grows past the multiplier width (``Q = 0.01``, ``m = 8``: ``n = 14``), which a datapath that shifts by at
most the multiplier width cannot do; the price is a coarser ``A``. (A cap tied to a 32-bit accumulator would
be a different hardware model; the original's ``m``-bit cap is kept so results compare with it.)

All functions work elementwise on tensors (per-channel scales). They compute in float64, so that ``A`` is
exact up to 53 bits, and return the input's floating dtype (the default dtype for python numbers and
integer tensors).
"""

from __future__ import annotations

import torch

from distiller.errors import ConfigError, QuantizationError

__all__ = [
    "approx_scale_as_mult_and_shift",
    "get_scale_approximation_mult",
    "get_scale_approximation_params",
    "get_scale_approximation_shift_bits",
]

TensorLike = torch.Tensor | float | int


def _scale_f64(fp32_scale: TensorLike) -> tuple[torch.Tensor, torch.dtype]:
    t = torch.as_tensor(fp32_scale)
    dtype = t.dtype if t.is_floating_point() else torch.get_default_dtype()
    return t.to(torch.float64), dtype


def _check_mult_bits(mult_bits: int) -> None:
    if isinstance(mult_bits, bool) or not isinstance(mult_bits, int) or not 1 <= mult_bits <= 52:
        raise ConfigError(f"mult_bits must be an integer in [1, 52], got {mult_bits!r}; 16 or 32 are typical.")


def _shift_bits(scale: torch.Tensor, mult_bits: int, limit: bool) -> torch.Tensor:
    if not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise QuantizationError(
            f"Scales to approximate must be finite and > 0, got {scale.flatten()[:8].tolist()}; "
            "check the quantization statistics of this layer."
        )
    shift = torch.log2((2**mult_bits - 1) / scale).floor()
    return shift.clamp(max=mult_bits) if limit else shift


def get_scale_approximation_shift_bits(fp32_scale: TensorLike, mult_bits: int, limit: bool = False) -> torch.Tensor:
    """``n = floor(log2((2^m - 1) / Q))``, capped at ``m`` when ``limit`` (see the module docstring).

    Raises:
        QuantizationError: a scale that is not finite and positive.
        ConfigError: ``mult_bits`` outside ``[1, 52]``.
    """
    _check_mult_bits(mult_bits)
    scale, dtype = _scale_f64(fp32_scale)
    return _shift_bits(scale, mult_bits, limit).to(dtype)


def get_scale_approximation_mult(fp32_scale: TensorLike, shift_bits: TensorLike) -> torch.Tensor:
    """``A = floor(2^n * Q)``."""
    scale, dtype = _scale_f64(fp32_scale)
    shift = torch.as_tensor(shift_bits, dtype=torch.float64, device=scale.device)
    return (scale * torch.pow(2.0, shift)).floor().to(dtype)


def get_scale_approximation_params(
    fp32_scale: TensorLike, mult_bits: int, limit: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer multiplier ``A`` and shift ``n`` with ``Q ~= A / 2^n`` (integer-valued floating tensors)."""
    _check_mult_bits(mult_bits)
    scale, dtype = _scale_f64(fp32_scale)
    shift = _shift_bits(scale, mult_bits, limit)
    mult = (scale * torch.pow(2.0, shift)).floor()
    return mult.to(dtype), shift.to(dtype)


def approx_scale_as_mult_and_shift(fp32_scale: TensorLike, mult_bits: int, limit: bool = False) -> torch.Tensor:
    """``A / 2^n``: the value the integer datapath effectively multiplies by instead of ``Q``."""
    _check_mult_bits(mult_bits)
    scale, dtype = _scale_f64(fp32_scale)
    shift = _shift_bits(scale, mult_bits, limit)
    return ((scale * torch.pow(2.0, shift)).floor() / torch.pow(2.0, shift)).to(dtype)
