"""Sensitivity tables on disk: CSV (the original's format), PNG curves, and back.

The CSV has the header ``parameter,sparsity,top1,top5,loss`` and one row per (parameter, level), so
tables written by the original Distiller load too. Coupled-group rows name the group and its pruned
weights in the ``parameter`` column, ``group<id>:<weight>;<weight>;...``; semicolons keep the file
free of CSV quoting. Numbers are written with Python's shortest round-trip repr, so a loaded table
equals the one written.
"""

from __future__ import annotations

import csv
import math
import os
from collections import OrderedDict
from pathlib import Path

from distiller.analysis.sensitivity import SensitivityTable
from distiller.errors import ConfigError
from distiller.fileio import atomic_output

__all__ = [
    "CSV_HEADER",
    "load_sensitivities_csv",
    "sensitivities_to_csv",
    "sensitivities_to_png",
]

CSV_HEADER = ("parameter", "sparsity", "top1", "top5", "loss")

_LINE_STYLES = ("-", "--", ":", "-.")
_LABELS = {"top1": "top-1 accuracy (%)", "top5": "top-5 accuracy (%)", "loss": "loss"}


def sensitivities_to_csv(sensitivities: SensitivityTable, fname: str | os.PathLike) -> Path:
    """Write the table as CSV (atomically: a reader never sees half a file); returns the path."""
    path = Path(fname)
    with atomic_output(path, "sensitivity CSV") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(CSV_HEADER)
        for name, levels in sensitivities.items():
            for sparsity, (top1, top5, loss) in levels.items():
                writer.writerow([name, repr(float(sparsity)), repr(float(top1)), repr(float(top5)), repr(float(loss))])
    return path


def _number(text: str, source: Path, line: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"{source}, line {line}: column {column!r} must be a number, got {text!r}. Fix or regenerate the "
            "file (distiller classify --sense ...)."
        ) from None
    if math.isnan(value):
        raise ConfigError(f"{source}, line {line}: column {column!r} is NaN; regenerate the file.")
    return value


def load_sensitivities_csv(fname: str | os.PathLike) -> SensitivityTable:
    """Read a sensitivity CSV into the table form of :func:`perform_sensitivity_analysis`.

    Raises:
        ConfigError: the file is missing or unreadable, its header is not ``parameter,sparsity,top1,
            top5,loss``, a row has the wrong number of fields or a non-number, a sparsity is outside
            [0, 1], a (parameter, sparsity) pair repeats, or it has no rows; the message names the
            file and line.
    """
    path = Path(fname)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(
            f"Sensitivity table {path} does not exist; write one with distiller classify --sense."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read the sensitivity table {path}: {err}.") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or tuple(c.strip() for c in rows[0]) != CSV_HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        raise ConfigError(
            f"{path} is not a sensitivity table: its header must be {','.join(CSV_HEADER)!r}, found {found!r}."
        )
    table: SensitivityTable = OrderedDict()
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(CSV_HEADER):
            raise ConfigError(
                f"{path}, line {line}: expected {len(CSV_HEADER)} fields ({','.join(CSV_HEADER)}), got {len(row)}."
            )
        name = row[0].strip()
        if not name:
            raise ConfigError(f"{path}, line {line}: the parameter column is empty.")
        sparsity, top1, top5, loss = (_number(t.strip(), path, line, c) for t, c in zip(row[1:], CSV_HEADER[1:]))
        if not 0.0 <= sparsity <= 1.0:
            raise ConfigError(f"{path}, line {line}: sparsity {sparsity} is outside [0, 1].")
        levels = table.setdefault(name, OrderedDict())
        if sparsity in levels:
            raise ConfigError(f"{path}, line {line}: {name!r} at sparsity {sparsity} appears twice.")
        levels[sparsity] = (top1, top5, loss)
    if not table:
        raise ConfigError(f"{path} has a header but no rows; regenerate it with distiller classify --sense.")
    return table


def sensitivities_to_png(
    sensitivities: SensitivityTable,
    fname: str | os.PathLike,
    metric: str = "top1",
    title: str | None = None,
) -> Path:
    """Plot one curve per parameter (or group), ``metric`` against sparsity, and save it as PNG.

    The curves are :func:`distiller.analysis.charts.plot_sensitivities`'s, drawn on matplotlib's Agg
    canvas directly (no pyplot), so no global backend is switched, nothing needs a display, and no
    figure stays open. The legend sits outside the axes: a ResNet has dozens of curves. The file is
    written atomically.

    Raises:
        ConfigError: unknown ``metric`` (one of ``top1``, ``top5``, ``loss``).
        ExportError: the file cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from distiller.analysis.charts import plot_sensitivities

    figure = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = plot_sensitivities(sensitivities, metric, ax=figure.add_subplot(1, 1, 1))
    for i, line in enumerate(axes.get_lines()):  # the colour cycle repeats every 10 curves: vary the dashes
        line.set_linestyle(_LINE_STYLES[i // 10 % len(_LINE_STYLES)])
    axes.set_ylabel(_LABELS[metric])
    axes.set_title(title or "Pruning sensitivity")
    axes.grid(True, alpha=0.3)
    columns = 1 + len(sensitivities) // 30
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="x-small", handlelength=4, ncol=columns)
    figure.tight_layout()
    path = Path(fname)
    with atomic_output(path, "sensitivity plot") as tmp:
        figure.savefig(tmp, format="png")
    return path
