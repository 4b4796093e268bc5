"""Fractions and sample counts.

Every size a user gives (``--effective-*-size``, calibration and statistics subsets) is either a
fraction of a split (a value <= 1.0) or an integer sample count (> 1), as in DESIGN §7. One
function interprets them all, so the rule cannot drift between features.
"""

from __future__ import annotations

import math
from numbers import Real

from distiller.errors import ConfigError

_EPS = 1e-9  # 0.29 * 100 == 28.999999999999996: floor must not lose a sample to rounding


def check_size(value: float | int, name: str = "size") -> None:
    """Raise :class:`ConfigError` unless ``value`` is a fraction in (0, 1] or an integer count > 1."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{name} must be a fraction in (0, 1] or an integer sample count > 1, got {value!r}.")
    if value <= 0:
        raise ConfigError(f"{name} must be positive (a fraction in (0, 1] or a sample count > 1), got {value!r}.")
    if value > 1 and float(value) != int(value):
        raise ConfigError(
            f"{name}={value!r}: a value above 1 is a sample count and must be an integer "
            "(use a value <= 1.0 for a fraction)."
        )


def resolve_size(value: float | int, total: int, name: str = "size") -> int:
    """The number of samples ``value`` selects out of ``total``.

    A fraction keeps ``floor(value * total)`` samples, but at least one of a non-empty split; a
    count larger than ``total`` is clipped to ``total`` (asking for 1000 samples of a 500-sample
    split means "all of it").
    """
    check_size(value, name)
    if total <= 0:
        return 0
    if value <= 1:
        return max(1, min(total, math.floor(float(value) * total + _EPS)))
    return min(int(value), total)
