"""Choosing the float range to quantize: clip modes, and ACIQ analytical clipping.

Quantizing the full ``[min, max]`` of a long-tailed activation wastes most of the integer grid on a
few outliers. Clipping trades a little error on the tails for finer steps everywhere else. The
:class:`~distiller.quantization.modes.ClipMode` chooses how:

* ``NONE``: ``[min, max]``; ``AVG``: ``[avg_min, avg_max]`` (mean over samples of the per-sample extremes);
* ``N_STD``: ``mean -+ n * std``, kept inside ``[min, max]``;
* ``GAUSS`` / ``LAPLACE``: ACIQ (Banner et al., "Post-training 4-bit quantization of convolution networks
  for rapid-deployment", arXiv:1810.05723). Assuming the values follow a Gaussian (scale ``std``) or a
  Laplace distribution (scale ``b = mean|x - mean|``), clipping at ``+-alpha`` around the mean with ``M``
  bits has expected squared error ``clip(alpha) + alpha^2 / (3 * 4^M)`` (the second term is the rounding
  noise ``step^2 / 12`` with ``step = 2 alpha / 2^M``), where

  - Laplace: ``clip = 2 b^2 exp(-alpha / b)``, minimal where ``alpha / b = 3 * 4^M * exp(-alpha / b)``;
  - Gauss: ``clip = (alpha^2 + s^2) erfc(alpha / (s sqrt 2)) - alpha s sqrt(2 / pi) exp(-alpha^2 / 2 s^2)``.

  :func:`solve_alpha` finds the optimum by bisection. The tables below are the original's published values
  (two decimals); the tests check that the derivation reproduces each to its last published digit.
  Widths outside the tables are solved for.

  Half range (the values go through a fused ReLU, so only ``[0, alpha]`` is quantized): with ``M`` bits on
  ``[0, alpha]`` the step is ``alpha / 2^M``, the step of ``M + 1`` bits on ``[-alpha, alpha]``, and both
  error terms cover half of the distribution, so the optimum is the full-range one for ``M + 1`` bits.

Statistics come as a dict with the keys of the calibration statistics files (``min``, ``max``,
``avg_min``, ``avg_max``, ``mean``, ``std``, ``b``; python numbers or tensors), or are computed from a
tensor by :func:`clip_range_from_tensor` (dynamic quantization).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from distiller.errors import ConfigError, QuantizationError
from distiller.quantization.modes import (
    ClipMode,
    LinearQuantMode,
    is_symmetric,
    verify_clip_mode,
    verify_linear_quant_mode,
)
from distiller.quantization.ranges import (
    get_tensor_avg_min_max,
    get_tensor_mean_n_stds_min_max,
    get_tensor_min_max,
    get_tensor_stats,
)

__all__ = [
    "ALPHA_GAUSS",
    "ALPHA_GAUSS_HALF_RANGE",
    "ALPHA_LAPLACE",
    "ALPHA_LAPLACE_HALF_RANGE",
    "AciqAsymmetricClipper",
    "AciqSymmetricClipper",
    "aciq_alpha",
    "clip_range_from_stats",
    "clip_range_from_tensor",
    "solve_alpha",
]

# Optimal clipping value by number of bits, in units of b (Laplace) or std (Gauss): the original's tables.
ALPHA_LAPLACE = MappingProxyType({0: 1.05, 1: 1.86, 2: 2.83, 3: 3.89, 4: 5.03, 5: 6.2, 6: 7.41, 7: 8.64, 8: 9.89})
ALPHA_LAPLACE_HALF_RANGE = MappingProxyType(
    {0: 1.86, 1: 2.83, 2: 3.89, 3: 5.02, 4: 6.2, 5: 7.41, 6: 8.64, 7: 9.89, 8: 11.16}
)
ALPHA_GAUSS = MappingProxyType({1: 1.24, 2: 1.71, 3: 2.15, 4: 2.55, 5: 2.93, 6: 3.28, 7: 3.61, 8: 3.92})
ALPHA_GAUSS_HALF_RANGE = MappingProxyType({1: 1.71, 2: 2.15, 3: 2.55, 4: 2.93, 5: 3.28, 6: 3.61, 7: 3.92, 8: 4.2})

_TABLES = {
    (ClipMode.LAPLACE, False): ALPHA_LAPLACE,
    (ClipMode.LAPLACE, True): ALPHA_LAPLACE_HALF_RANGE,
    (ClipMode.GAUSS, False): ALPHA_GAUSS,
    (ClipMode.GAUSS, True): ALPHA_GAUSS_HALF_RANGE,
}


def _aciq_type(clip_type: ClipMode | str) -> ClipMode:
    mode = verify_clip_mode(clip_type)
    if mode not in (ClipMode.GAUSS, ClipMode.LAPLACE):
        raise ConfigError(f"ACIQ clipping assumes a distribution: use GAUSS or LAPLACE, not {mode.name}.")
    return mode


def _check_bits(num_bits: int) -> None:
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or num_bits < 0:
        raise ConfigError(f"num_bits must be an integer >= 0, got {num_bits!r}.")


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of an increasing ``f`` in ``[lo, hi]``."""
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if f(mid) > 0 else (mid, hi)
    return (lo + hi) / 2


def solve_alpha(num_bits: int, clip_type: ClipMode | str, half_range: bool = False) -> float:
    """The clipping value minimising ACIQ's expected squared error, in units of ``b`` or ``std`` (unit scale)."""
    _check_bits(num_bits)
    clip_type = _aciq_type(clip_type)
    m = num_bits + 1 if half_range else num_bits
    quant = 3 * 4**m  # rounding noise is alpha^2 / quant
    if clip_type == ClipMode.LAPLACE:
        # d/da [2 exp(-a) + a^2 / quant] = 0  <=>  a - quant * exp(-a) = 0 (increasing in a)
        return _bisect(lambda a: a - quant * math.exp(-a), 0.0, 10.0 + 2 * m)

    # The derivative of the Gaussian error (convex in a, so it increases).
    def derivative(a: float) -> float:
        return 2 * a * math.erfc(a / math.sqrt(2)) - 2 * math.sqrt(2 / math.pi) * math.exp(-a * a / 2) + 2 * a / quant

    return _bisect(derivative, 0.0, 10.0 + m)


def aciq_alpha(num_bits: int, clip_type: ClipMode | str, half_range: bool = False) -> float:
    """ACIQ's clipping value for ``num_bits``: the original's table entry, else :func:`solve_alpha`."""
    _check_bits(num_bits)
    table = _TABLES[(_aciq_type(clip_type), bool(half_range))]
    return table[num_bits] if num_bits in table else solve_alpha(num_bits, clip_type, half_range)


def _stat(stats: Mapping[str, Any], key: str) -> torch.Tensor:
    if key not in stats:
        raise QuantizationError(
            f"The statistics have no {key!r} entry (they have {sorted(stats)}); collect calibration statistics "
            "again, or choose a clip mode that does not need it."
        )
    t = torch.as_tensor(stats[key])
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


class _AciqClipper:
    def __init__(self, num_bits: int, clip_type: ClipMode | str = ClipMode.LAPLACE) -> None:
        _check_bits(num_bits)
        self.num_bits = num_bits
        self.clip_type = _aciq_type(clip_type)

    def alpha(self, stats: Mapping[str, Any], half_range: bool = False) -> torch.Tensor:
        """The clipping distance from the mean: the table value times ``b`` or ``std`` of ``stats``."""
        scale = _stat(stats, "b" if self.clip_type == ClipMode.LAPLACE else "std")
        return scale * aciq_alpha(self.num_bits, self.clip_type, half_range)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_bits={self.num_bits}, clip_type={self.clip_type.name})"


class AciqSymmetricClipper(_AciqClipper):
    """ACIQ range centred on 0: ``+-(|mean| + alpha)``; ``[0, |mean| + alpha]`` with ``half_range``."""

    def __call__(self, stats: Mapping[str, Any], half_range: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        clip = _stat(stats, "mean").abs() + self.alpha(stats, half_range)
        return (torch.zeros_like(clip) if half_range else -clip), clip


class AciqAsymmetricClipper(_AciqClipper):
    """ACIQ range ``mean -+ alpha`` inside ``[min, max]``; from ``max(min, 0)`` with ``half_range``."""

    def __call__(self, stats: Mapping[str, Any], half_range: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        mean, alpha = _stat(stats, "mean"), self.alpha(stats, half_range)
        min_val, max_val = _stat(stats, "min"), _stat(stats, "max")
        if half_range:
            low = min_val.clamp(min=0)
            high = torch.maximum(torch.minimum(max_val, mean.clamp(min=0) + alpha), low)
        else:
            low = torch.maximum(min_val, mean - alpha)
            high = torch.minimum(max_val, mean + alpha)
        return low, high


def _check_num_stds(clip_mode: ClipMode, num_stds: float | None) -> None:
    if clip_mode != ClipMode.N_STD:
        return
    if num_stds is None:
        raise ConfigError("Clip mode N_STD needs a number of standard deviations: set clip_n_stds (e.g. 3).")
    if isinstance(num_stds, bool) or not isinstance(num_stds, int | float) or not num_stds > 0:
        raise ConfigError(f"clip_n_stds must be a number > 0, got {num_stds!r}.")


def _aciq_clipper(clip_mode: ClipMode, num_bits: int, mode: LinearQuantMode) -> _AciqClipper:
    cls = AciqSymmetricClipper if is_symmetric(mode) else AciqAsymmetricClipper
    return cls(num_bits, clip_mode)


def _apply_half_range(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    low = low.clamp(min=0)
    return low, torch.maximum(high, low)


def clip_range_from_stats(
    stats: Mapping[str, Any],
    clip_mode: ClipMode | str,
    num_bits: int,
    mode: LinearQuantMode | str,
    num_stds: float | None = None,
    half_range: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The saturation range ``(sat_min, sat_max)`` for ``clip_mode`` from a calibration stats dict.

    ``half_range`` (a ReLU follows) raises ``sat_min`` to at least 0. Symmetric modes get the range as is:
    :func:`~distiller.quantization.linear.quant_params_for_range` takes the larger absolute bound.

    Raises:
        ConfigError: a bad clip mode or mode, or N_STD without a positive ``num_stds``.
        QuantizationError: ``stats`` lacks an entry the clip mode needs.
    """
    clip_mode, mode = verify_clip_mode(clip_mode), verify_linear_quant_mode(mode)
    _check_num_stds(clip_mode, num_stds)
    if clip_mode in (ClipMode.GAUSS, ClipMode.LAPLACE):
        low, high = _aciq_clipper(clip_mode, num_bits, mode)(stats, half_range=half_range)
    elif clip_mode == ClipMode.AVG:
        low, high = _stat(stats, "avg_min"), _stat(stats, "avg_max")
    else:
        low, high = _stat(stats, "min"), _stat(stats, "max")
        if clip_mode == ClipMode.N_STD:
            mean, std = _stat(stats, "mean"), _stat(stats, "std")
            low, high = torch.maximum(low, mean - num_stds * std), torch.minimum(high, mean + num_stds * std)
    return _apply_half_range(low, high) if half_range else (low, high)


def clip_range_from_tensor(
    t: torch.Tensor,
    clip_mode: ClipMode | str,
    num_bits: int,
    mode: LinearQuantMode | str,
    num_stds: float | None = None,
    half_range: bool = False,
    per_dim: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The saturation range for ``clip_mode`` computed from ``t`` itself (dynamic quantization).

    ``AVG`` averages the per-sample extremes over dim 0 (the batch); ``GAUSS`` / ``LAPLACE`` fit ``std`` / ``b``
    to ``t``. ``per_dim`` gives one range per slice along that dimension (per-channel weights); it cannot be
    combined with ``AVG``, which already reduces dim 0.

    Raises:
        ConfigError: as :func:`clip_range_from_stats`, or ``AVG`` with ``per_dim``.
    """
    clip_mode, mode = verify_clip_mode(clip_mode), verify_linear_quant_mode(mode)
    _check_num_stds(clip_mode, num_stds)
    if clip_mode == ClipMode.AVG:
        if per_dim is not None:
            raise ConfigError(
                "Clip mode AVG averages over the batch and gives one range; use NONE or N_STD per channel."
            )
        low, high = get_tensor_avg_min_max(t, across_dim=0 if t.dim() > 0 else None)
    elif clip_mode == ClipMode.N_STD:
        low, high = get_tensor_mean_n_stds_min_max(t, dim=per_dim, n_stds=num_stds)
    elif clip_mode == ClipMode.NONE:
        low, high = get_tensor_min_max(t, per_dim=per_dim)
    else:
        stats = get_tensor_stats(t, per_dim=per_dim)
        low, high = _aciq_clipper(clip_mode, num_bits, mode)(stats, half_range=half_range)
    return _apply_half_range(low, high) if half_range else (low, high)
