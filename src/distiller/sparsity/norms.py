"""The original's named norm functions and per-structure norm helpers (``distiller.norms``).

Thin wrappers over :meth:`Granularity.group_norms
<distiller.sparsity.granularity.Granularity.group_norms>`, kept so code written against the
original's ``kernels_norm(param, l1_norm, group_len, length_normalized)`` style keeps working.
One difference: the original's ``rows_norm``/``cols_norm`` used ``group_len`` only to scale the
normalization; here ``group_len`` joins adjacent rows/columns, as it does for the other groups.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from distiller.sparsity.granularity import Channels, Cols, Filters, Kernels, NormSpec, Rows, lp_norm

__all__ = [
    "NamedNorm",
    "l1_norm",
    "l2_norm",
    "max_norm",
    "norm_from_name",
    "kernels_norm",
    "kernels_lp_norm",
    "channels_norm",
    "channels_lp_norm",
    "filters_norm",
    "filters_lp_norm",
    "rows_norm",
    "rows_lp_norm",
    "cols_norm",
    "cols_lp_norm",
]


class NamedNorm:
    """A norm with a name for logs (``str(l1_norm) == "L1"``), callable as ``norm(t, dim=1)``."""

    def __init__(self, p: NormSpec, name: str) -> None:
        self.p = p
        self.name = name

    def __call__(self, t: torch.Tensor, dim: int = 1) -> torch.Tensor:
        return lp_norm(t.movedim(dim, -1).reshape(-1, t.shape[dim]), self.p).reshape(t.shape[:dim] + t.shape[dim + 1 :])

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"NamedNorm({self.name})"


l1_norm = NamedNorm(1, "L1")
l2_norm = NamedNorm(2, "L2")
max_norm = NamedNorm(math.inf, "Max")

NormLike = NamedNorm | NormSpec


def norm_from_name(name: str) -> NamedNorm:
    """``'L1'``, ``'L2'`` or ``'Max'`` (case-insensitive) to the named norm."""
    table = {"l1": l1_norm, "l2": l2_norm, "max": max_norm}
    try:
        return table[str(name).lower()]
    except KeyError:
        from distiller.errors import ConfigError

        raise ConfigError(f"Unknown norm {name!r}; use 'L1', 'L2' or 'Max'.") from None


def _p(norm_fn: NormLike) -> NormSpec:
    return norm_fn.p if isinstance(norm_fn, NamedNorm) else norm_fn


def _lp(p: int) -> NamedNorm:
    if p not in (1, 2):
        from distiller.errors import ConfigError

        raise ConfigError(f"p must be 1 or 2; got {p!r}.")
    return l1_norm if p == 1 else l2_norm


def _make(granularity, kind: str, doc: str) -> tuple[Callable, Callable]:
    def norm(
        param: torch.Tensor, norm_fn: NormLike, group_len: int = 1, length_normalized: bool = False
    ) -> torch.Tensor:
        return granularity.group_norms(param, p=_p(norm_fn), length_normalized=length_normalized, group_len=group_len)

    def lp(param: torch.Tensor, p: int = 1, group_len: int = 1, length_normalized: bool = False) -> torch.Tensor:
        return norm(param, _lp(p), group_len, length_normalized)

    norm.__doc__ = f"Norm of each (group of ``group_len`` adjacent) {doc}; one value per group."
    lp.__doc__ = f"L1 (``p=1``) or L2 (``p=2``) norm of each {doc}."
    norm.__name__ = norm.__qualname__ = f"{kind}_norm"
    lp.__name__ = lp.__qualname__ = f"{kind}_lp_norm"
    return norm, lp


kernels_norm, kernels_lp_norm = _make(Kernels(), "kernels", "2-D kernel of a 4-D tensor")
channels_norm, channels_lp_norm = _make(Channels(), "channels", "input channel (a column of a 2-D tensor)")
filters_norm, filters_lp_norm = _make(Filters(), "filters", "filter (output channel)")
rows_norm, rows_lp_norm = _make(Rows(), "rows", "row of a 2-D tensor")
cols_norm, cols_lp_norm = _make(Cols(), "cols", "column of a 2-D tensor")
