"""The original Distiller's thresholding API, on top of the pure mask functions.

Kept so that regularizers and pruners ported from the original call the same names:
``create_mask_threshold_criterion``, ``create_mask_level_criterion``,
``create_mask_sensitivity_criterion``, ``group_threshold_binary_map``, ``group_threshold_mask``,
``expand_binary_map`` and ``mask_tensor``.

Threshold criteria name a norm and whether it is divided by the group size
(``'Mean' in criteria``): ``'Mean_Abs'``/``'Mean_L1'`` (mean magnitude), ``'L1'``,
``'Mean_L2'``, ``'L2'``, and ``'Max'`` (largest magnitude). Group types are the original's
``group_type`` spellings (``'2D'``, ``'Rows'``, ``'Cols'``, ``'3D'``/``'Filters'``,
``'Channels'``, ``'4D'``) and every other granularity name
(:func:`~distiller.sparsity.granularity.granularity_from_name`).
"""

from __future__ import annotations

import torch

from distiller.errors import ConfigError
from distiller.sparsity.criteria import level_mask, sensitivity_mask, threshold_mask
from distiller.sparsity.granularity import Granularity, granularity_from_name
from distiller.sparsity.norms import NamedNorm, l1_norm, l2_norm, max_norm

__all__ = [
    "THRESHOLD_CRITERIA",
    "threshold_mask",
    "create_mask_threshold_criterion",
    "create_mask_level_criterion",
    "create_mask_sensitivity_criterion",
    "threshold_criteria_norm",
    "group_threshold_binary_map",
    "group_threshold_mask",
    "expand_binary_map",
    "mask_tensor",
]

THRESHOLD_CRITERIA: dict[str, NamedNorm] = {
    "Mean_Abs": l1_norm,
    "Mean_L1": l1_norm,
    "L1": l1_norm,
    "Mean_L2": l2_norm,
    "L2": l2_norm,
    "Max": max_norm,
}


def create_mask_threshold_criterion(tensor: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Keep the elements with ``|w| > threshold`` (values equal to the threshold are pruned)."""
    return threshold_mask(tensor, threshold)


def create_mask_level_criterion(tensor: torch.Tensor, desired_sparsity: float) -> torch.Tensor:
    """Prune the ``round(desired_sparsity * numel)`` smallest magnitudes, exactly.

    Unlike the original (which thresholded at the k-th smallest value and so over-pruned when
    values tie, e.g. on a tensor of ones), the count is exact; ``desired_sparsity=0`` prunes
    nothing instead of failing.
    """
    return level_mask(tensor, desired_sparsity)


def create_mask_sensitivity_criterion(tensor: torch.Tensor, sensitivity: float) -> torch.Tensor:
    """Keep ``|w| > sensitivity * std(w)``, with ``std`` measured on the first call.

    As in the original, the standard deviation is cached on the tensor object (attribute
    ``stddev``) so the threshold does not drift as the tensor becomes sparse. Pruners that need
    the value in a checkpoint keep it themselves and call
    :func:`~distiller.sparsity.criteria.sensitivity_mask` with ``std=``.
    """
    std = getattr(tensor, "stddev", None)
    if std is None:
        std = tensor.detach().std().item()
        tensor.stddev = std
    return sensitivity_mask(tensor, sensitivity, std=std)


def threshold_criteria_norm(threshold_criteria: str) -> tuple[NamedNorm, bool]:
    """``(norm, length_normalized)`` of a criteria name.

    Raises:
        ConfigError: unknown criteria, with the close matches.
    """
    norm = THRESHOLD_CRITERIA.get(threshold_criteria)
    if norm is None:
        from distiller.registry import did_you_mean

        hint = did_you_mean(str(threshold_criteria), list(THRESHOLD_CRITERIA))
        raise ConfigError(
            f"Unknown threshold_criteria {threshold_criteria!r}.{hint} Known: {', '.join(THRESHOLD_CRITERIA)}."
        )
    return norm, "Mean" in threshold_criteria


def group_threshold_binary_map(
    param: torch.Tensor,
    group_type: str | Granularity,
    threshold: float | torch.Tensor,
    threshold_criteria: str,
) -> torch.Tensor:
    """One 0/1 value per structure: 1 where the structure's criteria norm is above ``threshold``.

    The map has one entry per structure of ``group_type`` (e.g. ``out*in`` for ``'2D'``), in
    ``param``'s dtype.
    """
    norm, length_normalized = threshold_criteria_norm(threshold_criteria)
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.item()
    g = granularity_from_name(group_type)
    norms = g.group_norms(param, p=norm.p, length_normalized=length_normalized)
    return norms.gt(threshold).to(param.dtype)


def group_threshold_mask(
    param: torch.Tensor,
    group_type: str | Granularity,
    threshold: float | torch.Tensor,
    threshold_criteria: str,
    binary_map: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, binary_map)``: the thresholded structures, expanded to ``param``'s shape.

    Pass ``binary_map`` to reuse a map computed on another tensor (``group_dependency: Leader``).
    """
    if binary_map is None:
        binary_map = group_threshold_binary_map(param, group_type, threshold, threshold_criteria)
    return expand_binary_map(param, group_type, binary_map)


def expand_binary_map(
    param: torch.Tensor, group_type: str | Granularity, binary_map: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, binary_map)``: a per-structure map expanded to ``param``'s shape.

    ``'Channels'`` on a 2-D tensor are its columns, as in the original.

    Raises:
        ConfigError: the map's length is not the number of structures.
    """
    if binary_map is None:
        raise ConfigError("expand_binary_map needs a binary_map.")
    g = granularity_from_name(group_type)
    n = g.num_structures(param.shape)
    if binary_map.numel() != n:
        raise ConfigError(
            f"A {g} map of {binary_map.numel()} entries does not fit a tensor of shape {tuple(param.shape)} "
            f"({n} structures)."
        )
    return g.expand(binary_map.to(param.device), param.shape), binary_map


def mask_tensor(tensor: torch.Tensor, mask: torch.Tensor | None, inplace: bool = True) -> torch.Tensor:
    """``tensor * mask`` (in place by default); ``tensor`` unchanged when ``mask`` is None.

    Raises:
        ConfigError: the mask's shape differs from the tensor's.
    """
    if mask is None:
        return tensor
    if mask.shape != tensor.shape:
        raise ConfigError(f"Mask of shape {tuple(mask.shape)} does not fit a tensor of shape {tuple(tensor.shape)}.")
    with torch.no_grad():
        return tensor.mul_(mask) if inplace else tensor.mul(mask)
