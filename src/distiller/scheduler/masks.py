"""The scheduler's masks: a :class:`~distiller.sparsity.MaskSet` that also takes plain tensors.

Code written against the first scheduler of this project assigned mask tensors directly
(``scheduler.masks[name] = tensor``); the original's users assigned ``zeros_mask_dict[name].mask``.
Both work: a tensor (or ``None``) assigned to a name becomes that parameter's masker's mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distiller.naming import normalize_module_name
from distiller.sparsity.masks import Masker, MaskSet

__all__ = ["SchedulerMasks", "masks_state", "new_masks"]


class SchedulerMasks(MaskSet):
    """A :class:`MaskSet` whose item assignment accepts a tensor or ``None`` as the mask."""

    def __setitem__(self, name: str, value: Any) -> None:
        key = normalize_module_name(name)
        if isinstance(value, Masker):
            dict.__setitem__(self, key, value)
            return
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"A mask must be a tensor, None or a Masker, got {type(value).__name__}")
        masker = dict.get(self, key)
        if masker is None:
            masker = Masker(key)
            dict.__setitem__(self, key, masker)
        masker.mask = value


def new_masks(model: nn.Module) -> SchedulerMasks:
    """One empty masker per named parameter of ``model`` (canonical names)."""
    masks = SchedulerMasks()
    for name, _ in model.named_parameters():
        key = normalize_module_name(name)
        dict.__setitem__(masks, key, Masker(key))
    return masks


def masks_state(masks: Any) -> dict[str, torch.Tensor | None]:
    """``{canonical name: mask on CPU or None}`` of any mapping of maskers."""
    out: dict[str, torch.Tensor | None] = {}
    for name, masker in masks.items():
        mask = getattr(masker, "mask", masker)
        out[normalize_module_name(name)] = None if mask is None else mask.detach().cpu()
    return out
