"""The enumerations that name a range-linear quantization scheme, and their parsers.

A :class:`LinearQuantMode` says how a float range maps onto an integer grid:

* ``SYMMETRIC`` -- zero-point 0, signed grid ``[-2^(b-1), 2^(b-1)-1]`` (8 bits: ``[-128, 127]``);
* ``SYMMETRIC_RESTRICTED`` -- as above but one bin fewer, ``[-(2^(b-1)-1), 2^(b-1)-1]`` (8 bits: ``[-127, 127]``),
  the TensorFlow convention that keeps the grid symmetric around 0;
* ``ASYMMETRIC_UNSIGNED`` -- any range that contains 0, grid ``[0, 2^b-1]``;
* ``ASYMMETRIC_SIGNED`` -- the same, shifted onto the signed grid ``[-2^(b-1), 2^(b-1)-1]``.

A layer may quantize activations and weights differently, so the quantizer carries a
:class:`ModuleQuantMode` pair. :class:`ClipMode` says how the float range of activations is chosen
from calibration statistics (see :mod:`distiller.quantization.aciq`).

User input (YAML values, CLI flags) arrives as strings: :func:`verify_quant_mode` and
:func:`verify_clip_mode` accept the enum names in any case and the original CLI's short names
(``sym``, ``sym_restr``, ``asym_u``, ``asym_s``; ``none``, ``avg``, ``n_std``, ``gauss``, ``laplace``),
and raise :class:`~distiller.errors.ConfigError` listing the valid choices for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple, TypeVar

from distiller.errors import ConfigError

__all__ = [
    "ClipMode",
    "LinearQuantMode",
    "ModuleQuantMode",
    "is_restricted",
    "is_signed",
    "is_symmetric",
    "verify_clip_mode",
    "verify_linear_quant_mode",
    "verify_quant_mode",
]


class LinearQuantMode(Enum):
    """How a float range maps onto the integer grid (see the module docstring)."""

    SYMMETRIC = 1
    SYMMETRIC_RESTRICTED = 2
    ASYMMETRIC_UNSIGNED = 3
    ASYMMETRIC_SIGNED = 4


class ClipMode(Enum):
    """How the float range to quantize is chosen from statistics."""

    NONE = 0  # the absolute min / max
    AVG = 1  # the mean over samples of the per-sample min / max
    N_STD = 2  # mean +- n standard deviations, inside the absolute min / max
    GAUSS = 3  # ACIQ, assuming a Gaussian distribution
    LAPLACE = 4  # ACIQ, assuming a Laplace distribution


class ModuleQuantMode(NamedTuple):
    """The modes of one layer: activations (inputs/outputs) and weights."""

    activations: LinearQuantMode
    weights: LinearQuantMode


# Short names used by the original command line (`--qe-mode sym`, ...).
_QUANT_MODE_ALIASES = {
    "sym": LinearQuantMode.SYMMETRIC,
    "sym_restr": LinearQuantMode.SYMMETRIC_RESTRICTED,
    "asym_u": LinearQuantMode.ASYMMETRIC_UNSIGNED,
    "asym_s": LinearQuantMode.ASYMMETRIC_SIGNED,
}

_E = TypeVar("_E", bound=Enum)


def _parse_enum(value: Any, enum_cls: type[_E], aliases: Mapping[str, _E], what: str) -> _E:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, str):
        key = value.strip().lower()
        if key in aliases:
            return aliases[key]
        for member in enum_cls:
            if member.name.lower() == key:
                return member
    choices = list(aliases) + [m.name for m in enum_cls if m.name.lower() not in aliases]
    raise ConfigError(f"Unknown {what} {value!r}; choose one of: {', '.join(choices)}.")


def verify_linear_quant_mode(mode: LinearQuantMode | str) -> LinearQuantMode:
    """A single :class:`LinearQuantMode` from an enum member or a name (case-insensitive, or a CLI short name).

    Raises:
        ConfigError: the value names no mode.
    """
    return _parse_enum(mode, LinearQuantMode, _QUANT_MODE_ALIASES, "quantization mode")


def verify_quant_mode(mode: LinearQuantMode | str | Mapping[str, Any] | ModuleQuantMode) -> ModuleQuantMode:
    """The :class:`ModuleQuantMode` a user's ``mode`` setting stands for.

    A single mode (enum member or name) applies to both activations and weights. A mapping
    ``{'activations': ..., 'weights': ...}`` sets them separately; a missing key means ``SYMMETRIC``,
    as in the original.

    Raises:
        ConfigError: an unknown mode name, or a mapping with keys other than ``activations`` / ``weights``.
    """
    if isinstance(mode, ModuleQuantMode):
        return ModuleQuantMode(verify_linear_quant_mode(mode.activations), verify_linear_quant_mode(mode.weights))
    if isinstance(mode, Mapping):
        unknown = sorted(str(k) for k in mode if k not in ("activations", "weights"))
        if unknown:
            raise ConfigError(
                f"Unknown key(s) {unknown} in the quantization mode mapping; use 'activations' and/or 'weights'."
            )
        return ModuleQuantMode(
            verify_linear_quant_mode(mode.get("activations", LinearQuantMode.SYMMETRIC)),
            verify_linear_quant_mode(mode.get("weights", LinearQuantMode.SYMMETRIC)),
        )
    single = verify_linear_quant_mode(mode)
    return ModuleQuantMode(single, single)


def verify_clip_mode(value: ClipMode | str) -> ClipMode:
    """A :class:`ClipMode` from an enum member or a name (case-insensitive: ``none``, ``avg``, ``n_std``, ...).

    Raises:
        ConfigError: the value names no clip mode.
    """
    return _parse_enum(value, ClipMode, {}, "clip mode")


def is_symmetric(mode: LinearQuantMode) -> bool:
    """Whether ``mode`` has a zero-point fixed at 0."""
    return mode in (LinearQuantMode.SYMMETRIC, LinearQuantMode.SYMMETRIC_RESTRICTED)


def is_signed(mode: LinearQuantMode) -> bool:
    """Whether ``mode`` quantizes onto a signed integer grid (every mode but ``ASYMMETRIC_UNSIGNED``)."""
    return mode != LinearQuantMode.ASYMMETRIC_UNSIGNED


def is_restricted(mode: LinearQuantMode) -> bool:
    """Whether ``mode`` drops the most negative integer (``[-127, 127]`` at 8 bits)."""
    return mode == LinearQuantMode.SYMMETRIC_RESTRICTED
