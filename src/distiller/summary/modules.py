"""The model and modules summaries (``--summary model`` and ``--summary modules``).

``model`` is PyTorch's own description of the module tree (``str(model)``), as the original printed
it. ``modules`` lists the *leaf* modules (those without children: the layers that actually compute)
with their types and parameter counts, which is what one needs to write the parameter names of a
compression schedule.
"""

from __future__ import annotations

import pandas as pd
from torch import nn

from distiller.naming import normalize_module_name

__all__ = [
    "MODULES_COLUMNS",
    "model_summary_text",
    "modules_summary",
    "render_modules_summary",
    "total_parameters",
]

MODULES_COLUMNS: tuple[str, ...] = ("Name", "Type", "Parameters")


def model_summary_text(model: nn.Module) -> str:
    """The module tree as PyTorch prints it (``str(model)``)."""
    return str(model)


def modules_summary(model: nn.Module) -> pd.DataFrame:
    """Leaf modules in registration order: canonical name, class name, number of parameter elements.

    A module registered under several names is listed under its first one, as ``named_modules()``
    does. ``df.attrs["total_parameters"]`` counts every parameter of the model once.
    """
    rows = [
        [normalize_module_name(name), type(module).__name__, sum(p.numel() for p in module.parameters())]
        for name, module in model.named_modules()
        if name and not list(module.children())
    ]
    df = pd.DataFrame(rows, columns=list(MODULES_COLUMNS))
    df.attrs["total_parameters"] = sum(p.numel() for p in model.parameters())
    return df


def total_parameters(df: pd.DataFrame) -> int:
    """The number of parameter elements of the model a :func:`modules_summary` table describes."""
    return int(df.attrs.get("total_parameters", df["Parameters"].sum()))


def render_modules_summary(df: pd.DataFrame) -> str:
    """The table as text, ending with ``Total parameters: 270,410``."""
    from tabulate import tabulate

    table = tabulate(df.values.tolist(), headers=list(df.columns), tablefmt="psql")
    return f"{table}\nTotal parameters: {total_parameters(df):,}"
