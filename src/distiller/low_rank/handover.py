"""Handing a replaced layer's place in the optimizer and in the masks over to its factors.

Thinning slices parameters in place, so optimizers keep holding them. A factorization creates new
parameters, so the optimizer must drop the old ones and train the new ones, or training would go on
updating tensors the model no longer uses. The new parameters take the old ones' *positions* in
their parameter groups (weight factors where the weight was, the bias where the bias was): an
optimizer built on ``model.parameters()`` lists them in exactly that order, which is what lets a
checkpoint's optimizer state be loaded into the optimizer the app rebuilds on resume.

Optimizer state (momentum, Adam moments) of the old parameters is dropped and the new ones start
fresh: the old moments have the old shapes and no meaning for the factors.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import torch
from torch import nn

from distiller.low_rank.module import FactorizedLayer
from distiller.sparsity.masks import Masker

__all__ = ["hand_over_masks", "hand_over_optimizer"]

log = logging.getLogger(__name__)


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor | None) -> dict[str, Any] | None:
    if param is None:
        return None
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return group
    return None


def hand_over_optimizer(optimizer: torch.optim.Optimizer, old: nn.Module, new: FactorizedLayer) -> None:
    """Replace ``old``'s parameters by ``new``'s in ``optimizer``'s groups, in place.

    The weight factors join the group of the old weight at its position, the bias takes the old
    bias's position (or follows the factors when the old bias was not trained). A layer whose weight
    the optimizer did not train (frozen) stays untrained.
    """
    factors = [new[0].weight, new[1].weight]
    bias = [new[1].bias] if new[1].bias is not None else []
    weight_group = _group_of(optimizer, old.weight)
    bias_group = _group_of(optimizer, old.bias)
    if weight_group is None:
        factors = []
    elif bias_group is None:
        factors, bias = factors + bias, []
    for group in optimizer.param_groups:
        params: list[torch.Tensor] = []
        for p in group["params"]:
            if p is old.weight:
                params += factors
            elif old.bias is not None and p is old.bias:
                params += bias
            else:
                params.append(p)
        group["params"] = params
    for p in (old.weight, old.bias):
        if p is not None:
            optimizer.state.pop(p, None)


def hand_over_masks(masks: MutableMapping[str, Any], name: str, old: nn.Module, new: FactorizedLayer) -> None:
    """Drop the maskers of ``old``'s parameters and give ``new``'s parameters empty ones.

    New maskers are added only when the mapping had one for the old parameters (the scheduler's
    masks hold one per parameter; a user's ``{name: mask}`` of a few tensors does not). A mask on
    the old weight is lost: the factors of a sparse matrix are dense, so element sparsity does not
    survive factorization (a warning says so).
    """
    found, maskers = False, False
    for suffix in ("weight", "bias"):
        key = f"{name}.{suffix}"
        if key not in masks:
            continue
        value = masks.pop(key)
        found, maskers = True, maskers or isinstance(value, Masker)
        mask = getattr(value, "mask", value)
        if mask is not None:
            log.warning("%s had a mask; the factors of %s are dense, so its sparsity is not kept.", key, name)
    if not found:
        return
    for param_name, _ in new.named_parameters():
        key = f"{name}.{param_name}"
        masks[key] = Masker(key) if maskers else None
