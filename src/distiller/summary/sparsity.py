"""The weights-sparsity summary (``--summary sparsity``) and the masks summary (``--masks-sparsity``).

:func:`sparsity_summary` returns the original's table as a DataFrame: one row per 2-D/4-D
``weight``/``bias`` tensor of the state dict, then a ``Total sparsity:`` row. Percent columns
(``Cols``, ``Rows``, ``Ch``, ``2D``, ``3D``, ``Fine``) follow the original metrics, including its
transposed row/column convention for 2-D weights (see :mod:`distiller.sparsity.metrics`).
:func:`render_sparsity_summary` prints it as a ``psql`` table followed by the exact line
``Total sparsity: 8.88`` (percent, two decimals) that scripts parse (DESIGN §7).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from distiller.naming import normalize_module_name
from distiller.sparsity import metrics as M

__all__ = [
    "SPARSITY_COLUMNS",
    "TOTAL_LABEL",
    "sparsity_summary",
    "total_sparsity",
    "render_sparsity_summary",
    "masks_sparsity_summary",
    "render_masks_sparsity_summary",
    "write_csv",
]

SPARSITY_COLUMNS: tuple[str, ...] = (
    "Name",
    "Shape",
    "NNZ (dense)",
    "NNZ (sparse)",
    "Cols (%)",
    "Rows (%)",
    "Ch (%)",
    "2D (%)",
    "3D (%)",
    "Fine (%)",
    "Std",
    "Mean",
    "Abs-Mean",
)
TOTAL_LABEL = "Total sparsity:"


def size_to_str(shape: Sequence[int]) -> str:
    """``(16, 3, 3, 3)``, the original's shape spelling."""
    return "(" + ", ".join(str(int(d)) for d in shape) + ")"


def sparsity_summary(
    model: nn.Module,
    param_dims: Sequence[int] = M.DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = M.DEFAULT_PARAM_TYPES,
) -> pd.DataFrame:
    """The per-tensor sparsity table with the original's columns and a final total row.

    Args:
        model: the model (wrapped or not; names are canonical, without ``module.``).
        param_dims: ranks of the tensors listed.
        param_types: name substrings of the tensors listed.

    Returns:
        A DataFrame with :data:`SPARSITY_COLUMNS`. The last row is ``Total sparsity:`` with the
        element counts and the overall ``Fine (%)``; its other numeric cells are 0, as in the
        original. ``df.attrs["total_sparsity"]`` holds the total (percent).
    """
    rows: list[list[Any]] = []
    total = 0
    nnz_total = 0
    for name, param in M.model_params(model, param_dims, param_types):
        t = param.detach()
        numel = t.numel()
        nnz = int(torch.count_nonzero(t).item())
        total += numel
        nnz_total += nnz
        tf = t.float()
        rows.append(
            [
                normalize_module_name(name),
                size_to_str(t.shape),
                numel,
                nnz,
                M.sparsity_cols(t) * 100,
                M.sparsity_rows(t) * 100,
                M.sparsity_ch(t) * 100,
                M.sparsity_2D(t) * 100,
                M.sparsity_3D(t) * 100,
                (1 - nnz / numel) * 100,
                tf.std().item(),
                tf.mean().item(),
                tf.abs().mean().item(),
            ]
        )
    overall = (1 - nnz_total / total) * 100 if total else 0.0
    rows.append([TOTAL_LABEL, "-", total, nnz_total, 0, 0, 0, 0, 0, overall, 0, 0, 0])
    df = pd.DataFrame(rows, columns=list(SPARSITY_COLUMNS))
    df.attrs["total_sparsity"] = overall
    return df


def total_sparsity(df: pd.DataFrame) -> float:
    """The ``Fine (%)`` of the ``Total sparsity:`` row of a summary DataFrame."""
    if "total_sparsity" in df.attrs:
        return float(df.attrs["total_sparsity"])
    last = df[df["Name"] == TOTAL_LABEL]
    return float(last["Fine (%)"].iloc[-1])


def render_sparsity_summary(df: pd.DataFrame, title: str | None = None) -> str:
    """The table as text (``psql`` layout), ending with the line ``Total sparsity: 8.88``.

    Args:
        df: a DataFrame from :func:`sparsity_summary` or :func:`masks_sparsity_summary`.
        title: an optional first line (the original app printed ``Parameters:``).
    """
    from tabulate import tabulate

    table = tabulate(df, headers="keys", tablefmt="psql", floatfmt=".5f")
    lines = ([title] if title else []) + [table, f"{TOTAL_LABEL[:-1]}: {total_sparsity(df):.2f}"]
    return "\n".join(lines)


def _masks_of(masks: Any) -> Mapping[str, Any]:
    """A name -> mask-or-masker mapping from a MaskSet, a scheduler, or a plain dict."""
    if not isinstance(masks, Mapping):
        for attr in ("zeros_mask_dict", "masks"):
            inner = getattr(masks, attr, None)
            if isinstance(inner, Mapping):
                masks = inner
                break
    if isinstance(masks, Mapping):
        return {normalize_module_name(k): v for k, v in masks.items()}
    raise TypeError(f"Expected a MaskSet, a scheduler or a dict of masks; got {type(masks).__name__}.")


def _lookup(masks: Mapping[str, Any], name: str) -> torch.Tensor | None:
    entry = masks.get(normalize_module_name(name))
    return getattr(entry, "mask", entry)


def masks_sparsity_summary(
    model: nn.Module,
    masks: Any,
    param_dims: Sequence[int] = M.DEFAULT_PARAM_DIMS,
    param_types: Sequence[str] = M.DEFAULT_PARAM_TYPES,
) -> pd.DataFrame:
    """Sparsity of the *masks* (not of the weights): columns ``Name``, ``Fine (%)`` and a total row.

    The masks say what pruning intends; under soft pruning (``mask_on_forward_only``) the
    weights may differ. A tensor without a mask counts as dense. The argument order follows the
    original's ``masks_sparsity_summary(model, scheduler)``.

    Args:
        model: the model, for the listed tensors and their sizes.
        masks: a :class:`~distiller.sparsity.masks.MaskSet`, a scheduler holding one
            (``zeros_mask_dict`` or ``masks``), or a dict ``{name: mask or None}``.
        param_dims: ranks of the tensors listed.
        param_types: name substrings of the tensors listed.
    """
    table = _masks_of(masks)
    rows: list[list[Any]] = []
    total = 0
    dense = 0.0
    for name, param in M.model_params(model, param_dims, param_types):
        mask = _lookup(table, name)
        density = 1.0 if mask is None else M.density(mask)
        total += param.numel()
        dense += param.numel() * density
        rows.append([normalize_module_name(name), (1 - density) * 100])
    overall = (1 - dense / total) * 100 if total else 0.0
    rows.append([TOTAL_LABEL, overall])
    df = pd.DataFrame(rows, columns=["Name", "Fine (%)"])
    df.attrs["total_sparsity"] = overall
    return df


def render_masks_sparsity_summary(model: nn.Module, masks: Any) -> str:
    """:func:`masks_sparsity_summary` as text, ending with ``Total sparsity: x.xx``."""
    return render_sparsity_summary(masks_sparsity_summary(model, masks))


def write_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` as CSV atomically (temporary file in the same folder, then rename).

    A reader never sees a half-written file, and an existing file is replaced only once the
    new one is complete.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            df.to_csv(f, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
