"""The ``group_type`` strings of group regularizers, and the structures they stand for.

A group type names one structure (``Filters``, ``Channels``, ...) or the sum of two penalties
over different structures (``Rows+Cols``, ``Channels+4D``). Cutting a tensor into structures is
the job of :mod:`distiller.sparsity.granularity`; this module only maps the original's spellings
onto granularities and checks, when a schedule is loaded, that the parameter has a shape the
structure fits, so that a wrong group fails at once rather than at the first training step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from distiller.errors import ConfigError
from distiller.registry import did_you_mean
from distiller.regularization.base import parse_strength
from distiller.sparsity.granularity import Granularity, granularity_from_name

__all__ = ["GROUP_TYPES", "GroupRegime", "group_lasso_penalty", "group_norms", "parse_group_regime"]

GROUP_TYPES: dict[str, tuple[str, ...]] = {
    "2D": ("2D",),
    "Kernels": ("2D",),
    "Rows": ("Rows",),
    "Cols": ("Cols",),
    "Rows+Cols": ("Rows", "Cols"),
    "Cols+Rows": ("Rows", "Cols"),
    "Channels": ("Channels",),
    "Filters": ("Filters",),
    "3D": ("Filters",),
    "4D": ("4D",),
    "Layer": ("4D",),
    "Channels+4D": ("Channels", "4D"),
    "4D+Channels": ("Channels", "4D"),
}
"""Every accepted ``group_type`` -> the structures whose penalties are summed."""

_FITS = {
    "2D": "a convolution weight (out, in, kh, kw)",
    "Rows": "a 2-D weight (e.g. nn.Linear)",
    "Cols": "a 2-D weight (e.g. nn.Linear)",
    "Channels": "a weight of at least 2 dimensions",
    "Filters": "a weight of at least 2 dimensions",
    "4D": "any tensor",
}


@dataclass(frozen=True)
class GroupRegime:
    """One parameter's ``[strength, group_type]``, with the granularities it resolves to."""

    strength: float
    group_type: str
    granularities: tuple[Granularity, ...]


def parse_group_regime(
    value: Any, param: torch.Tensor, where: str, allowed: tuple[str, ...] | None = None
) -> GroupRegime:
    """Validate ``[strength, group_type]`` for ``param``.

    Args:
        value: the YAML value, a two-element list.
        param: the parameter it applies to (its shape is checked against the structure).
        where: the context for messages, e.g. ``GroupLassoRegularizer 'r': reg_regims['fc.weight']``.
        allowed: the group types this regularizer accepts (default: all of :data:`GROUP_TYPES`).

    Raises:
        ConfigError: not a two-element list, a bad strength, an unknown group type (with close
            matches), or a structure that does not fit the parameter's shape.
    """
    allowed = allowed if allowed is not None else tuple(GROUP_TYPES)
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(f"{where}: expected [strength, group_type], e.g. [0.0005, {allowed[0]}], got {value!r}.")
    strength = parse_strength(value[0], where)
    group_type = value[1]
    if not isinstance(group_type, str) or group_type not in allowed:
        raise ConfigError(
            f"{where}: unknown group type {group_type!r}.{did_you_mean(str(group_type), list(allowed))} "
            f"Use one of: {', '.join(allowed)}."
        )
    granularities = []
    for structure in GROUP_TYPES[group_type]:
        granularity = granularity_from_name(structure)
        try:
            granularity.check(param.shape)
        except ConfigError:
            raise ConfigError(
                f"{where}: group type {group_type!r} needs {_FITS[structure]}, but the parameter has shape "
                f"{tuple(param.shape)}. {_hint(param.dim())}"
            ) from None
        granularities.append(granularity)
    return GroupRegime(strength, group_type, tuple(granularities))


def _hint(ndim: int) -> str:
    if ndim == 2:
        return "For a 2-D weight use Rows, Cols, Rows+Cols, Channels, Filters or 4D."
    if ndim == 4:
        return "For a convolution weight use 2D, Channels, Filters/3D, 4D or Channels+4D."
    return "For a 1-D tensor only 4D (the whole tensor) applies; consider L1Regularizer."


def group_norms(param: torch.Tensor, granularity: Granularity) -> torch.Tensor:
    """The L2 norm of every structure of ``param`` (differentiable, unlike ranking norms)."""
    return torch.linalg.vector_norm(granularity.group_view(param), ord=2, dim=1)


def group_lasso_penalty(param: torch.Tensor, regime: GroupRegime) -> torch.Tensor:
    """``strength * sum over structures of ||structure||_2``, summed over the regime's structures."""
    total = sum(group_norms(param, g).sum() for g in regime.granularities)
    return total * regime.strength
