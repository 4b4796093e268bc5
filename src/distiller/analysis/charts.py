"""Charts of the tables Distiller produces: summaries, AGP schedules, training runs, sensitivities.

Each ``plot_*`` function takes data -- a DataFrame from :mod:`distiller.summary`, a run's
``training_progress.csv``, a sensitivity analysis -- and an optional matplotlib ``ax`` to draw into,
and returns the Axes it drew on (``ax.figure`` is the Figure). Taking an ``ax`` lets a notebook put
several charts side by side or overlay two runs; returning it lets the caller restyle anything.
:func:`save_figure` writes a PNG atomically, so a report folder never holds a half-written image.

matplotlib is an optional dependency (``pip install 'distiller-nn[analysis]'``). It is imported only
when a chart is drawn, and on a machine without a display (a server, CI) the non-interactive Agg
backend is selected before pyplot is first imported, so that drawing never needs a GUI toolkit.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from distiller.errors import ConfigError
from distiller.fileio import atomic_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "PROGRESS_COLUMNS",
    "PROGRESS_FILE",
    "agp_schedule",
    "load_training_progress",
    "plot_agp_schedule",
    "plot_compute_summary",
    "plot_run_histories",
    "plot_sensitivities",
    "plot_sparsity_summary",
    "save_figure",
]

PROGRESS_FILE = "training_progress.csv"
"""The file every ``distiller classify`` run writes in its log dir (long format, one value per row)."""

PROGRESS_COLUMNS: tuple[str, ...] = ("phase", "epoch", "completed", "total", "step", "metric", "value")
"""The columns of :data:`PROGRESS_FILE`."""

_TOTAL_LABEL = "Total sparsity:"  # the last row of distiller.summary.sparsity_summary
_SENSITIVITY_METRICS = ("top1", "top5", "loss")


# --- matplotlib, imported on demand ---------------------------------------------------------------


def _headless() -> bool:
    """True on a Linux/BSD machine without an X or Wayland display (a server, a CI runner)."""
    if sys.platform in ("darwin", "win32"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _pyplot() -> Any:
    """``matplotlib.pyplot``, with Agg chosen first on a headless machine.

    The backend is left alone when the user chose one (``MPLBACKEND``, e.g. Jupyter's inline
    backend) or pyplot is already imported (switching then would close the user's figures).

    Raises:
        ConfigError: matplotlib is not installed.
    """
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as err:
        raise ConfigError(
            "Drawing charts needs matplotlib, which is not installed: pip install matplotlib "
            "(or pip install 'distiller-nn[analysis]')."
        ) from err
    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND") and _headless():
        matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new figure of ``figsize`` inches."""
    if ax is not None:
        return ax
    _, new_ax = _pyplot().subplots(figsize=figsize)
    return new_ax


def save_figure(fig: Figure | Axes, path: str | os.PathLike, *, dpi: int = 100, close: bool = False) -> Path:
    """Write ``fig`` (or the figure of an Axes) to ``path`` as a PNG, atomically.

    Args:
        fig: a Figure, or an Axes returned by a ``plot_*`` function.
        path: the PNG file; its folders are created.
        dpi: resolution.
        close: also close the figure, so that a script drawing many charts does not keep them
            all in pyplot's memory.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ExportError: ``path`` cannot be written; an existing file is left unchanged.
    """
    figure = getattr(fig, "figure", None) if not hasattr(fig, "savefig") else fig
    if figure is None or not hasattr(figure, "savefig"):
        raise ConfigError(f"save_figure needs a matplotlib Figure or Axes, got {type(fig).__name__}.")
    path = Path(path)
    with atomic_output(path, "chart") as tmp:
        figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    if close:
        _pyplot().close(figure)
    return path


# --- input checks ---------------------------------------------------------------------------------


def _require_columns(df: pd.DataFrame, columns: Sequence[str], what: str, source: str) -> None:
    """Raise a :class:`ConfigError` naming the missing ``columns`` of ``df`` and where it should come from."""
    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"{what} needs a pandas DataFrame from {source}, got {type(df).__name__}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ConfigError(
            f"{what} needs the column(s) {missing} (the DataFrame of {source}); this one has {list(df.columns)}."
        )


# --- summaries ------------------------------------------------------------------------------------


def _barh(ax: Axes, labels: Sequence[str], series: Mapping[str, Sequence[float]]) -> None:
    """Grouped horizontal bars, one group per label, listed top to bottom in table order."""
    count = len(series)
    height = 0.8 / max(count, 1)
    positions = list(range(len(labels)))
    for i, (name, values) in enumerate(series.items()):
        offset = (i - (count - 1) / 2) * height
        ax.barh([p + offset for p in positions], list(values), height=height, label=name)
    ax.set_yticks(positions)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()  # first layer on top, as in the table
    if count > 1:
        ax.legend()


def plot_sparsity_summary(
    df: pd.DataFrame, columns: str | Sequence[str] = "Fine (%)", *, ax: Axes | None = None
) -> Axes:
    """Per-layer sparsity bars from :func:`distiller.summary.sparsity_summary`.

    The table's ``Total sparsity:`` row is drawn as a dashed vertical line rather than a bar: it
    is a weighted average over all layers, and as a bar it would read as one more layer.

    Args:
        df: the sparsity summary DataFrame.
        columns: the percent column(s) to draw (``"Fine (%)"`` element-wise, ``"Ch (%)"``,
            ``"3D (%)"`` filters, ...); several give grouped bars.
        ax: Axes to draw into; a new figure by default.

    Returns:
        The Axes: one bar per layer and column.

    Raises:
        ConfigError: ``df`` lacks a column.
    """
    columns = [columns] if isinstance(columns, str) else list(columns)
    _require_columns(df, ["Name", *columns], "plot_sparsity_summary", "distiller.summary.sparsity_summary(model)")
    is_total = df["Name"] == _TOTAL_LABEL
    layers = df[~is_total]
    ax = _axes(ax, (7.0, 1.5 + 0.3 * len(layers)))
    _barh(ax, list(layers["Name"]), {c: layers[c].astype(float).tolist() for c in columns})
    if is_total.any():
        total = float(df.loc[is_total, "Fine (%)"].iloc[0]) if "Fine (%)" in df.columns else None
        if total is not None:
            ax.axvline(total, color="gray", linestyle="--", linewidth=1)
            ax.set_title(f"Sparsity per layer (total {total:.2f}%)")
    else:
        ax.set_title("Sparsity per layer")
    ax.set_xlabel("Sparsity (%)")
    ax.set_xlim(0, 100)
    return ax


def plot_compute_summary(df: pd.DataFrame, column: str = "MACs", *, ax: Axes | None = None) -> Axes:
    """Per-layer compute bars from :func:`distiller.summary.compute_summary`.

    Useful to see where a network spends its multiply-accumulates before choosing what to prune:
    removing 90% of the weights of a layer that holds 1% of the MACs buys little speed.

    Args:
        df: the compute summary DataFrame.
        column: the numeric column to draw (``"MACs"``, ``"Weights volume"``, ``"OFM volume"``, ...).
        ax: Axes to draw into; a new figure by default.

    Returns:
        The Axes: one bar per layer; the title holds the column's total.

    Raises:
        ConfigError: ``df`` lacks a column.
    """
    _require_columns(df, ["Name", column], "plot_compute_summary", "distiller.summary.compute_summary(model)")
    values = df[column].astype(float)
    ax = _axes(ax, (7.0, 1.5 + 0.3 * len(df)))
    _barh(ax, list(df["Name"]), {column: values.tolist()})
    from matplotlib.ticker import EngFormatter

    ax.xaxis.set_major_formatter(EngFormatter())  # 2.4M rather than an offset "1e6" in the corner
    ax.set_xlabel(column)
    ax.set_title(f"{column} per layer (total {int(values.sum()):,})")
    return ax


# --- AGP schedule ---------------------------------------------------------------------------------


def agp_schedule(
    initial_sparsity: float, final_sparsity: float, starting_epoch: int, ending_epoch: int, frequency: int = 1
) -> pd.DataFrame:
    """The AGP target sparsity at each epoch on which an AGP pruner fires.

    The targets come from the pruners' own rate (:class:`distiller.pruning.rates.AgpRate`), so the
    chart shows exactly what a schedule with these arguments does, window semantics included
    (``ending_epoch`` is exclusive; the final sparsity is reached on the last firing epoch).

    Returns:
        Columns ``epoch`` (the firing epochs ``starting_epoch, starting_epoch + frequency, ...``
        below ``ending_epoch``) and ``sparsity`` (fraction).

    Raises:
        ConfigError: a sparsity outside [0, 1], ``final_sparsity <= initial_sparsity``, or
            ``frequency < 1``.
        ScheduleError: the window is too short for a gradual schedule.
    """
    # Imported here: distiller.pruning imports distiller.analysis (activation statistics).
    from distiller.pruning.rates import AgpRate

    if int(frequency) < 1:
        raise ConfigError(f"frequency must be a positive number of epochs, got {frequency}.")
    rate = AgpRate(initial_sparsity, final_sparsity)
    epochs = list(range(int(starting_epoch), int(ending_epoch), int(frequency)))
    targets = [rate.step(e, int(starting_epoch), int(ending_epoch), int(frequency)) for e in epochs]
    if not epochs:  # let the rate explain why the window is empty
        rate.step(int(starting_epoch), int(starting_epoch), int(ending_epoch), int(frequency))
    return pd.DataFrame({"epoch": epochs, "sparsity": targets})


def plot_agp_schedule(
    initial_sparsity: float,
    final_sparsity: float,
    starting_epoch: int,
    ending_epoch: int,
    frequency: int = 1,
    *,
    label: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The AGP target sparsity (percent) per epoch, as a step line with a marker per pruning event.

    Call it several times with the same ``ax`` to compare schedules. Between two firing epochs the
    sparsity stays where the last pruning left it, hence the step drawing.

    Returns:
        The Axes; the new line has one point per firing epoch.

    Raises:
        ConfigError, ScheduleError: as :func:`agp_schedule`.
    """
    schedule = agp_schedule(initial_sparsity, final_sparsity, starting_epoch, ending_epoch, frequency)
    ax = _axes(ax, (6.0, 4.0))
    if label is None:
        label = (
            f"{initial_sparsity:g}\u2192{final_sparsity:g}, epochs [{starting_epoch}, {ending_epoch}) every {frequency}"
        )
    ax.plot(schedule["epoch"], schedule["sparsity"] * 100.0, drawstyle="steps-post", marker="o", label=label)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Target sparsity (%)")
    ax.set_ylim(0, 100)
    ax.set_title("AGP sparsity schedule")
    ax.legend()
    return ax


# --- training runs --------------------------------------------------------------------------------


def load_training_progress(run_dir: str | os.PathLike) -> pd.DataFrame:
    """Read a run's ``training_progress.csv`` (long format: one metric value per row).

    Args:
        run_dir: the run's log dir, the CSV file itself, or a ``--out-dir`` (its ``latest_log_dir``
            link is followed).

    Returns:
        The DataFrame with :data:`PROGRESS_COLUMNS`.

    Raises:
        ConfigError: no progress file there, or its columns are not the expected ones.
    """
    path = Path(run_dir)
    if path.is_dir():
        candidates = [path / PROGRESS_FILE, path / "latest_log_dir" / PROGRESS_FILE]
        path = next((c for c in candidates if c.is_file()), candidates[0])
    if not path.is_file():
        raise ConfigError(
            f"No {PROGRESS_FILE} at {str(path)!r}. Give the log dir of a `distiller classify` run "
            "(printed as 'Log dir: PATH'), its --out-dir, or the CSV file."
        )
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ConfigError(f"Cannot read {str(path)!r} as a training-progress CSV: {err}") from err
    _require_columns(df, PROGRESS_COLUMNS, f"load_training_progress({str(path)!r})", f"a {PROGRESS_FILE} file")
    return df


def _progress_x(rows: pd.DataFrame) -> pd.Series:
    """Epochs of training done when each value was logged: ``epoch + completed / total``.

    One rule for every phase keeps a run's curves comparable: training values logged every
    ``print_freq`` minibatches fall inside their epoch, and the validation of epoch ``e`` (logged
    with ``completed == total``) lands at ``e + 1``, after that epoch's training. Rows without a
    minibatch count (``total`` 0) stay on their epoch number.
    """
    epochs = rows["epoch"].astype(float)
    total = rows["total"].astype(float).where(rows["total"] > 0)
    return epochs + (rows["completed"].astype(float) / total).fillna(0.0)


def plot_run_histories(
    runs: Mapping[str, pd.DataFrame | str | os.PathLike],
    metric: str = "Top1",
    phase: str = "valid",
    *,
    ax: Axes | None = None,
) -> Axes:
    """Compare runs: one line per run of ``metric`` in ``phase`` against the epochs trained.

    The x position of a value is ``epoch + completed / total``, the training done when it was
    logged, so the validation of epoch 0 is drawn at 1.0 (see the CSV's ``epoch`` column for the
    epoch number the CLI prints).

    Args:
        runs: ``{label: progress}``, where progress is a DataFrame from
            :func:`load_training_progress` or a path it accepts.
        metric: e.g. ``Top1``, ``Top5``, ``Loss`` (valid) or ``Overall Loss``, ``LR`` (train).
        phase: ``train``, ``valid`` or ``test``.
        ax: Axes to draw into; a new figure by default.

    Returns:
        The Axes: one line per run, one point per logged value.

    Raises:
        ConfigError: a run has no values of ``metric`` in ``phase`` (the message lists what it has).
    """
    if not runs:
        raise ConfigError("plot_run_histories needs at least one run: {label: DataFrame or log dir}.")
    ax = _axes(ax, (7.0, 4.5))
    for label, progress in runs.items():
        df = progress if isinstance(progress, pd.DataFrame) else load_training_progress(progress)
        _require_columns(df, PROGRESS_COLUMNS, "plot_run_histories", f"a run's {PROGRESS_FILE}")
        rows = df[(df["phase"] == phase) & (df["metric"] == metric)]
        if rows.empty:
            available = sorted({f"{p}/{m}" for p, m in zip(df["phase"], df["metric"])})
            raise ConfigError(f"Run {label!r} logged no {phase}/{metric} values; it has: {', '.join(available)}.")
        rows = rows.sort_values(["epoch", "completed"], kind="stable")
        ax.plot(_progress_x(rows), rows["value"].astype(float), marker="o", markersize=3, label=str(label))
    ax.set_xlabel("Epochs trained")
    ax.set_ylabel(metric)
    ax.set_title(f"{phase} {metric}")
    ax.legend()
    return ax


# --- sensitivity analysis -------------------------------------------------------------------------


def _sensitivity_frame(sensitivities: Mapping[str, Mapping[float, Sequence[float]]] | pd.DataFrame) -> pd.DataFrame:
    """Long table ``parameter, sparsity, top1, top5, loss`` from either form of a sensitivity analysis."""
    if isinstance(sensitivities, pd.DataFrame):
        _require_columns(
            sensitivities, ["parameter", "sparsity"], "plot_sensitivities", "a sensitivity CSV (parameter,sparsity,...)"
        )
        return sensitivities
    rows = []
    for param, curve in sensitivities.items():
        for sparsity, values in curve.items():
            values = [float(v) for v in values]
            if len(values) != len(_SENSITIVITY_METRICS):
                raise ConfigError(
                    f"Sensitivity of {param!r} at {sparsity}: expected (top1, top5, loss), got {len(values)} values."
                )
            rows.append([param, float(sparsity), *values])
    return pd.DataFrame(rows, columns=["parameter", "sparsity", *_SENSITIVITY_METRICS])


def plot_sensitivities(
    sensitivities: Mapping[str, Mapping[float, Sequence[float]]] | pd.DataFrame,
    metric: str = "top1",
    *,
    ax: Axes | None = None,
) -> Axes:
    """Sensitivity curves: ``metric`` against the sparsity a parameter was pruned to, one line per parameter.

    A flat curve marks a layer that can be pruned hard; a steep one, a layer to leave (nearly)
    dense. These curves are how per-layer targets of a pruning schedule are usually chosen.

    Args:
        sensitivities: ``{param: {sparsity: (top1, top5, loss)}}`` as the sensitivity analysis
            returns it, or the DataFrame read back from its CSV.
        metric: ``top1``, ``top5`` or ``loss``.
        ax: Axes to draw into; a new figure by default.

    Returns:
        The Axes: one line per parameter, one point per sparsity level.

    Raises:
        ConfigError: unknown ``metric`` or malformed input.
    """
    df = _sensitivity_frame(sensitivities)
    if metric not in df.columns:
        raise ConfigError(f"Unknown sensitivity metric {metric!r}; use one of {', '.join(_SENSITIVITY_METRICS)}.")
    ax = _axes(ax, (7.0, 4.5))
    for param, rows in df.groupby("parameter", sort=False):
        rows = rows.sort_values("sparsity")
        ax.plot(rows["sparsity"].astype(float), rows[metric].astype(float), marker="o", markersize=3, label=param)
    ax.set_xlabel("Sparsity")
    ax.set_ylabel(metric)
    ax.set_title(f"Sensitivity ({metric})")
    ax.legend(fontsize="small")
    return ax
