"""Factorizing ``nn.Linear(in, out)`` into ``Linear(in, k, bias=False)`` then ``Linear(k, out)``.

``y = W x + b`` with ``W ≈ A B`` (``A``: ``out × k``, ``B``: ``k × in``) becomes ``y = A (B x) + b``:
the first layer's weight is ``B``, the second's is ``A`` and it keeps the bias. Where the singular
values go is the ``split`` of :func:`~distiller.low_rank.svd.truncated_svd` (default: ``√S`` to
each side, so both layers start at the same scale for fine-tuning).
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.svd import LowRankFactors, check_rank, truncated_svd

__all__ = ["factorize_linear", "linear_structure"]


def linear_structure(layer: nn.Linear, rank: int) -> FactorizedLayer:
    """The two-layer replacement of ``layer`` at ``rank``, with uninitialized weights.

    Replaying a checkpoint needs only the shapes (the weights are loaded next), so the SVD is not
    computed here.

    Raises:
        ConfigError: ``rank`` outside [1, min(in, out)].
    """
    check_rank(rank, min(layer.in_features, layer.out_features))
    kwargs = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    first = nn.Linear(layer.in_features, rank, bias=False, **kwargs)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None, **kwargs)
    out = FactorizedLayer(first, second, "linear", rank)
    out.train(layer.training)
    return out


@torch.no_grad()
def fill_linear(target: FactorizedLayer, layer: nn.Linear, factors: LowRankFactors) -> FactorizedLayer:
    """Copy ``factors`` (of ``layer.weight``) and ``layer``'s bias into ``target``."""
    first, second = target[0], target[1]
    first.weight.copy_(factors.right)
    second.weight.copy_(factors.left)
    if layer.bias is not None:
        second.bias.copy_(layer.bias)
    for param in (first.weight, second.weight, second.bias):
        if param is not None:
            param.requires_grad_(layer.weight.requires_grad)
    return target


def factorize_linear(
    layer: nn.Linear, rank: int | None = None, *, energy: float | None = None, split: str = "sqrt"
) -> tuple[FactorizedLayer, LowRankFactors]:
    """The rank-``k`` replacement of ``layer`` (exact at ``k = min(in, out)``) and its factors.

    Args:
        layer: the layer to replace (left unchanged).
        rank: the number of singular values kept.
        energy: instead of ``rank``, the share of the squared singular values to keep.
        split: where the singular values go (``sqrt``, ``first``, ``second``).

    Raises:
        ConfigError: neither or both of ``rank`` and ``energy``, or either out of range.
    """
    factors = truncated_svd(layer.weight, rank, energy=energy, split=split)
    return fill_linear(linear_structure(layer, factors.rank), layer, factors), factors
