"""The compute summary (``--summary compute``): shapes, weights and MACs of every convolution and Linear call.

The table is the original's ``model_performance_summary``: one row per call of a convolution
(including transposed ones) or a Linear layer, in execution order, with the columns of
:data:`COMPUTE_COLUMNS`. It is read off :class:`~distiller.graph.ModelGraph`, so the shapes and the
MAC counts are the very ones that thinning and the graph queries use (conventions in
:mod:`distiller.graph.macs`: per sample, biases ignored). :func:`render_compute_summary` ends with
the exact line ``Total MACs: 40,813,184`` that scripts parse (DESIGN §7).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from distiller.graph import build_graph, volume
from distiller.graph import example_input as make_example_input
from distiller.naming import normalize_module_name

__all__ = ["COMPUTE_COLUMNS", "compute_summary", "render_compute_summary", "total_macs"]

COMPUTE_COLUMNS: tuple[str, ...] = (
    "Name",
    "Type",
    "Attrs",
    "IFM",
    "IFM volume",
    "OFM",
    "OFM volume",
    "Weights volume",
    "MACs",
)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = (*_CONVS, nn.Linear)


def compute_summary(
    model: nn.Module, example_input: torch.Tensor | None = None, dataset: str | None = None
) -> pd.DataFrame:
    """Per-layer shapes, volumes and MACs of ``model`` for one input sample.

    Args:
        model: the model (wrapped or not; names are canonical, without ``module.``).
        example_input: an input batch; only its first sample is used, because the table describes
            one sample (the original ran a batch of one). Defaults to a random input of the shape of
            ``dataset``, or of ``model.input_shape``.
        dataset: a dataset name (``"cifar10"``) that tells the input shape.

    Returns:
        A DataFrame with :data:`COMPUTE_COLUMNS`. ``IFM``/``OFM`` are shape tuples with batch 1,
        ``Attrs`` is ``k=(3, 3)`` for convolutions and empty for Linear. ``df.attrs["total_macs"]``
        holds the total.

    Raises:
        GraphError: the input shape is unknown, or the model does not run on the input.
    """
    if example_input is None:
        example = make_example_input(model, dataset, batch_size=1)
    else:
        example = example_input[:1]
    graph = build_graph(model, example=example)
    modules = {normalize_module_name(name): m for name, m in model.named_modules()}
    rows: list[list[Any]] = []
    for node in graph.nodes.values():
        module = modules.get(node.module_name) if node.kind == "module" else None
        if not isinstance(module, _LAYERS) or node.output_shape is None:
            continue
        ifm = node.input_shapes[0] if node.input_shapes else None
        ofm = node.output_shape
        attrs = f"k={tuple(module.kernel_size)}" if isinstance(module, _CONVS) else ""
        rows.append(
            [
                node.module_name,
                type(module).__name__,
                attrs,
                ifm,
                volume(ifm) if ifm is not None else 0,
                ofm,
                volume(ofm),
                module.weight.numel(),
                node.macs,
            ]
        )
    df = pd.DataFrame(rows, columns=list(COMPUTE_COLUMNS))
    df.attrs["total_macs"] = int(df["MACs"].sum()) if rows else 0
    return df


def total_macs(df: pd.DataFrame) -> int:
    """The sum of the ``MACs`` column of a :func:`compute_summary` table."""
    return int(df["MACs"].sum()) if len(df) else 0


def render_compute_summary(df: pd.DataFrame, title: str | None = None) -> str:
    """The table as text (``psql`` layout), ending with the line ``Total MACs: 40,813,184``.

    Args:
        df: a DataFrame from :func:`compute_summary`.
        title: an optional first line.
    """
    from tabulate import tabulate

    table = tabulate(df, headers="keys", tablefmt="psql")
    lines = ([title] if title else []) + [table, f"Total MACs: {total_macs(df):,}"]
    return "\n".join(lines)
