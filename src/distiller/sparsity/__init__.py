"""Sparsity: masks, granularities, pure mask functions and sparsity metrics.

* :mod:`~distiller.sparsity.masks` — :class:`Masker` and :class:`MaskSet` (the original's
  ``ParameterMasker`` and ``zeros_mask_dict``).
* :mod:`~distiller.sparsity.granularity` — how tensors are cut into structures.
* :mod:`~distiller.sparsity.criteria` — pure ``(tensor, target, granularity) -> mask`` functions.
* :mod:`~distiller.sparsity.thresholding` — the original's thresholding API on top of them.
* :mod:`~distiller.sparsity.metrics` — density/sparsity of tensors and models.
"""

from distiller.sparsity.criteria import (
    level_mask,
    nm_mask,
    num_structs_to_prune,
    sensitivity_mask,
    structure_level_binary_map,
    structure_level_mask,
    structure_threshold_binary_map,
    structure_threshold_mask,
    threshold_mask,
)
from distiller.sparsity.granularity import (
    NM,
    Blocks,
    Channels,
    Cols,
    Element,
    Filters,
    Granularity,
    Kernels,
    Layer,
    Rows,
    granularity_from_name,
)
from distiller.sparsity.masks import Masker, MaskSet
from distiller.sparsity.metrics import (
    density,
    model_numel,
    model_params_stats,
    model_sparsity,
    sparsity,
    sparsity_2D,
    sparsity_3D,
    sparsity_blocks,
    sparsity_ch,
    sparsity_cols,
    sparsity_rows,
)

__all__ = [
    "Masker",
    "MaskSet",
    "Granularity",
    "Element",
    "Filters",
    "Channels",
    "Kernels",
    "Rows",
    "Cols",
    "Blocks",
    "Layer",
    "NM",
    "granularity_from_name",
    "threshold_mask",
    "level_mask",
    "sensitivity_mask",
    "num_structs_to_prune",
    "structure_level_binary_map",
    "structure_level_mask",
    "structure_threshold_binary_map",
    "structure_threshold_mask",
    "nm_mask",
    "density",
    "sparsity",
    "sparsity_3D",
    "sparsity_2D",
    "sparsity_ch",
    "sparsity_rows",
    "sparsity_cols",
    "sparsity_blocks",
    "model_sparsity",
    "model_params_stats",
    "model_numel",
]
