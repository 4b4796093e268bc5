"""Summaries of a model as pandas DataFrames, with text renderers, CSV writers and graph drawings."""

from distiller.summary.compute import COMPUTE_COLUMNS, compute_summary, render_compute_summary, total_macs
from distiller.summary.modules import (
    MODULES_COLUMNS,
    model_summary_text,
    modules_summary,
    render_modules_summary,
    total_parameters,
)
from distiller.summary.png import (
    draw_img_classifier_to_file,
    draw_model_to_file,
    graph_to_dot,
    model_to_dot,
    render_dot,
)
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
    "COMPUTE_COLUMNS",
    "MODULES_COLUMNS",
    "SPARSITY_COLUMNS",
    "compute_summary",
    "draw_img_classifier_to_file",
    "draw_model_to_file",
    "graph_to_dot",
    "masks_sparsity_summary",
    "model_summary_text",
    "model_to_dot",
    "modules_summary",
    "render_compute_summary",
    "render_dot",
    "render_masks_sparsity_summary",
    "render_modules_summary",
    "render_sparsity_summary",
    "sparsity_summary",
    "total_macs",
    "total_parameters",
    "total_sparsity",
    "write_csv",
]
