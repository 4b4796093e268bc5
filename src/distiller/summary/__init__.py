"""Summaries of a model as pandas DataFrames, with text renderers and CSV writers."""

from distiller.summary.sparsity import (
    SPARSITY_COLUMNS,
    masks_sparsity_summary,
    render_masks_sparsity_summary,
    render_sparsity_summary,
    sparsity_summary,
    total_sparsity,
    write_csv,
)

__all__ = [
    "SPARSITY_COLUMNS",
    "sparsity_summary",
    "render_sparsity_summary",
    "masks_sparsity_summary",
    "render_masks_sparsity_summary",
    "total_sparsity",
    "write_csv",
]
