"""Activation histograms over fixed ranges, for choosing and checking quantization clipping.

Histograms from different batches can only be added when their bins agree, so the bin edges are
fixed up front from each activation's ``min``/``max`` in previously collected statistics
(:func:`~distiller.quantization.calibration.collect_quant_stats`): one pass of the same calibration
batches then fills them. Values outside the recorded range (data the statistics did not see) are
counted in the first or last bin, so each histogram's counts add up to the number of elements seen.
NaNs are not counted.

Counts are exact int64 (``bincount`` over chunks): float32 ``histc`` counts stop being exact above
2**24 per bin, which a large calibration set reaches.

The histograms are saved with ``torch.save`` (``acts_histograms.pt``) and, when matplotlib is
installed, drawn as one PNG per module; matplotlib is optional and never required.
"""

from __future__ import annotations

import importlib.util
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.fileio import atomic_output
from distiller.quantization.calibration import (
    ActivationHooks,
    eval_mode,
    float_tensor,
    unwrap_parallel,
    watched_modules,
    widen,
)
from distiller.quantization.stats_file import load_quant_stats

__all__ = ["HISTOGRAMS_FILE", "ActivationHistogramsCollector", "collect_histograms", "save_histograms"]

HISTOGRAMS_FILE = "acts_histograms.pt"
IMAGES_FOLDER = "histogram_images"
_CHUNK = 1 << 24  # elements binned at a time: bounds the int64 index tensor's memory


def _bin_range(lo: float, hi: float) -> tuple[float, float]:
    """The histogram's range; a single-valued activation (always 0 after a ReLU, say) gets width 1."""
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


class _Histogram:
    """Exact counts of one activation over ``nbins`` equal bins between fixed edges."""

    def __init__(self, lo: float, hi: float, nbins: int) -> None:
        self.lo, self.hi = _bin_range(lo, hi)
        self.nbins = nbins
        self.counts: torch.Tensor | None = None  # int64, on the activations' device until value()

    def add(self, tensor: torch.Tensor) -> None:
        flat = widen(tensor).reshape(-1)
        counts = torch.zeros(self.nbins, dtype=torch.int64, device=flat.device) if self.counts is None else self.counts
        scale = self.nbins / (self.hi - self.lo)
        for start in range(0, flat.numel(), _CHUNK):
            chunk = flat[start : start + _CHUNK]
            chunk = chunk[~torch.isnan(chunk)]
            index = ((chunk - self.lo) * scale).floor().clamp_(0, self.nbins - 1).long()
            counts += torch.bincount(index, minlength=self.nbins)
        self.counts = counts

    def result(self) -> dict[str, Any]:
        counts = self.counts.cpu()
        return {
            "hist": counts,
            "bin_edges": torch.linspace(self.lo, self.hi, self.nbins + 1, dtype=torch.float64),
            "total_numel": int(counts.sum()),
        }


class ActivationHistogramsCollector(ActivationHooks):
    """Histograms of the inputs and outputs of the modules that have statistics.

    Args:
        model: the model whose ``forward`` is called (DataParallel wrappers are unwrapped).
        activation_stats: statistics (a dict or a stats file) giving each slot's ``min``/``max``;
            modules and slots without statistics are not recorded.
        nbins: bins per histogram.
        classes: record only leaf modules of these types (default: every leaf).

    Raises:
        ConfigError: ``nbins`` < 1 or malformed statistics.
        QuantizationError: no module of the model has statistics.
    """

    def __init__(
        self,
        model: nn.Module,
        activation_stats: Mapping[str, Any] | str | os.PathLike,
        nbins: int = 2048,
        classes: Sequence[type[nn.Module]] | None = None,
    ) -> None:
        if isinstance(nbins, bool) or not isinstance(nbins, int) or nbins < 1:
            raise ConfigError(f"Histograms need a positive number of bins; got nbins={nbins!r}.")
        model = unwrap_parallel(model)
        stats = load_quant_stats(activation_stats)
        modules = {n: m for n, m in watched_modules(model, classes).items() if n in stats}
        if not modules:
            raise QuantizationError(
                "None of the model's modules has activation statistics, so histogram ranges are unknown. "
                "Collect the statistics on this model first (collect_quant_stats / --qe-calibration)."
            )
        super().__init__(model, modules)
        self.nbins = nbins
        self._inputs: dict[str, dict[int, _Histogram]] = {}
        self._outputs: dict[str, _Histogram] = {}
        for name in modules:
            record = stats[name]
            self._inputs[name] = {i: _Histogram(e["min"], e["max"], nbins) for i, e in record.get("inputs", {}).items()}
            if "output" in record:
                self._outputs[name] = _Histogram(record["output"]["min"], record["output"]["max"], nbins)

    def on_inputs(self, name: str, args: tuple) -> None:
        slots = self._inputs[name]
        for index, arg in enumerate(args):
            tensor = float_tensor(arg)
            if tensor is not None and index in slots:
                slots[index].add(tensor)

    def on_output(self, name: str, output: Any) -> None:
        tensor = float_tensor(output)
        if tensor is not None and name in self._outputs:
            self._outputs[name].add(tensor)

    def value(self) -> dict[str, dict[str, Any]]:
        """``{module: {"inputs": {index: hist}, "output": hist}}``, each ``hist`` a dict with ``hist``
        (int64 counts), ``bin_edges`` (float64, ``nbins + 1``) and ``total_numel``; slots that saw no
        data are absent."""
        result: dict[str, dict[str, Any]] = {}
        for name in self.modules:
            record: dict[str, Any] = {}
            inputs = {i: h.result() for i, h in self._inputs[name].items() if h.counts is not None}
            if inputs:
                record["inputs"] = inputs
            output = self._outputs.get(name)
            if output is not None and output.counts is not None:
                record["output"] = output.result()
            if record:
                result[name] = record
        return result


def collect_histograms(
    model: nn.Module,
    run_forward: Callable[[nn.Module], None],
    activation_stats: Mapping[str, Any] | str | os.PathLike,
    *,
    nbins: int = 2048,
    save_dir: str | os.PathLike | None = None,
    save_images: bool = True,
    classes: Sequence[type[nn.Module]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Histograms of ``model``'s activations over the ranges of ``activation_stats`` (one pass).

    Args:
        model: the model (eval mode and ``torch.no_grad()`` during the pass; modes restored after).
        run_forward: ``run_forward(model)`` runs the calibration batches (see
            :func:`~distiller.quantization.calibration.calibration_forward`).
        activation_stats: statistics from :func:`collect_quant_stats`, or a stats file.
        nbins: bins per histogram.
        save_dir: also write them there with :func:`save_histograms`.
        save_images: with ``save_dir``, also draw PNGs (when matplotlib is installed).
        classes: record only leaf modules of these types.

    Returns:
        See :meth:`ActivationHistogramsCollector.value`.
    """
    inner = unwrap_parallel(model)
    collector = ActivationHistogramsCollector(inner, activation_stats, nbins=nbins, classes=classes)
    with eval_mode(inner), torch.no_grad(), collector:
        run_forward(inner)
    histograms = collector.value()
    if save_dir is not None:
        save_histograms(histograms, save_dir, images=save_images)
    return histograms


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (it is an optional dependency)."""
    return importlib.util.find_spec("matplotlib") is not None


def save_histograms(histograms: Mapping[str, Any], save_dir: str | os.PathLike, *, images: bool = True) -> list[Path]:
    """Write ``histograms`` to ``save_dir/acts_histograms.pt`` and, optionally, PNG drawings.

    Args:
        histograms: as returned by :func:`collect_histograms`.
        save_dir: the folder (created when missing).
        images: also draw one PNG per module under ``save_dir/histogram_images`` when matplotlib is
            installed (a warning says so when it is not).

    Returns:
        The files written, the ``.pt`` file first (for ``Saved: PATH`` lines).
    """
    save_dir = Path(save_dir)
    target = save_dir / HISTOGRAMS_FILE
    with atomic_output(target, "activation histograms") as tmp:
        torch.save(dict(histograms), tmp)
    written = [target]
    if images:
        if matplotlib_available():
            written += [_draw(name, record, save_dir / IMAGES_FOLDER) for name, record in histograms.items()]
        else:
            warnings.warn("matplotlib is not installed: histogram images were not drawn.", stacklevel=2)
    return written


def _draw(name: str, record: Mapping[str, Any], folder: Path) -> Path:
    """One PNG per module, a panel per input and for the output (no pyplot: no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [(f"input {i}", h) for i, h in record.get("inputs", {}).items()]
    if "output" in record:
        panels.append(("output", record["output"]))
    figure = Figure(figsize=(7, 2.6 * len(panels)))
    FigureCanvasAgg(figure)
    for row, (title, hist) in enumerate(panels, start=1):
        axes = figure.add_subplot(len(panels), 1, row)
        axes.stairs(hist["hist"].numpy(), hist["bin_edges"].numpy(), fill=True)
        axes.set_title(f"{name} {title} ({hist['total_numel']:,} values)", fontsize=9)
        axes.set_yscale("log")
    figure.tight_layout()
    path = folder / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
    with atomic_output(path, "histogram image") as tmp:
        figure.savefig(tmp, format="png", dpi=80)
    return path
