"""The classifier app's activation statistics: ``--act-stats PHASE...`` and ``--act-hist PORTION``.

* ``--act-stats train valid test``: :class:`PhaseCollectors` measures the phases asked for while the
  app trains, validates and tests (sparsity of each activation's output, per-channel L1 / APoZ /
  mean, per-batch records of every ``Conv2d``) and writes ``<log dir>/<phase>_<stat>.xlsx`` and
  ``.csv``. The data loggers read :meth:`PhaseCollectors.sparsity`.
* ``--act-hist PORTION``: :func:`activation_histograms_mode` runs the model in evaluation mode on a
  fixed, seeded subset of the training split (evaluation transforms; a fraction <= 1 or a sample
  count > 1), first to collect each activation's min/max (the histograms' ranges:
  ``acts_quantization_stats.yaml``), then to fill 2048-bin histograms of every leaf module's inputs
  and output (``acts_histograms.pt`` and ``histogram_images/*.png``). It does not train or evaluate.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from distiller.analysis.collector_files import TABLE_FORMATS, openpyxl_available
from distiller.analysis.collector_sets import check_phases, create_activation_stats_collectors, save_collectors_data
from distiller.analysis.collectors import ActivationStatsCollector, collectors_context
from distiller.errors import ConfigError

if TYPE_CHECKING:
    from distiller.apps.classifier import ClassifierApp, ClassifierResult

log = logging.getLogger(__name__)

__all__ = ["HISTOGRAM_BINS", "PhaseCollectors", "activation_histograms_mode"]

HISTOGRAM_BINS = 2048
"""Bins per activation histogram (the original's)."""

STATS_FILE = "acts_quantization_stats.yaml"


class PhaseCollectors:
    """The ``--act-stats`` collectors of a run, one set per phase asked for.

    ::

        acts = PhaseCollectors(model, ["train", "valid"])
        with acts.phase("train"):          # reset, collect, stop
            train_one_epoch(...)
        loggers.log_activation_statistic("train", "sparsity", acts.sparsity("train"), epoch)
        saved = acts.save(run_dir, "train")

    A phase that was not asked for costs nothing: :meth:`phase` does not hook the model, and
    :meth:`sparsity` returns ``{}``.

    The collectors are bound to ``model``: an app that swaps its model object (post-training
    quantization builds a new one) builds a new ``PhaseCollectors`` for it (compare :attr:`model`).
    Modules replaced *inside* the model are picked up at each phase start.

    Args:
        model: the model the app trains (statistics are named by its canonical module names).
        phases: any of ``train``, ``valid``, ``test``.
        formats: file formats :meth:`save` writes. Default: ``xlsx`` and ``csv``, or only ``csv``
            (with a warning in the log) when openpyxl is not installed, so a long run never fails
            at its first save.

    Raises:
        ConfigError: an unknown phase or format.
    """

    def __init__(self, model: nn.Module, phases: Iterable[str], formats: Iterable[str] | None = None) -> None:
        self.model = model
        self.phases = check_phases(list(phases))
        if formats is None:
            formats = TABLE_FORMATS
            if self.phases and not openpyxl_available():
                log.warning("--act-stats: openpyxl is not installed, statistics are saved as CSV only")
                formats = ("csv",)
        self.formats = tuple(formats)
        unknown = [f for f in self.formats if f not in TABLE_FORMATS]
        if unknown:
            raise ConfigError(f"PhaseCollectors: unknown format(s) {unknown}; use {', '.join(TABLE_FORMATS)}.")
        self.collectors = create_activation_stats_collectors(model, *self.phases)

    def __bool__(self) -> bool:
        return bool(self.phases)

    def enabled(self, phase: str) -> bool:
        """Whether ``phase`` is measured."""
        return phase in self.phases

    def _of(self, phase: str) -> Mapping[str, ActivationStatsCollector]:
        check_phases([phase])
        return self.collectors[phase]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Mapping[str, ActivationStatsCollector]]:
        """Collect during the block when ``name`` was asked for (statistics reset at its start).

        Yields the phase's ``{stat: collector}`` dict (empty when the phase is not measured).
        """
        with collectors_context(self._of(name)) as collectors:
            yield collectors

    def sparsity(self, phase: str) -> dict[str, float]:
        """``{activation module: percentage of zeros in its output}`` of the phase's latest pass
        (``{}`` when the phase is not measured or saw no data); what data loggers record."""
        collector = self._of(phase).get("sparsity_ofm")
        if collector is None:
            return {}
        return {name: float(value) for name, value in collector.value().items()}

    def value(self, phase: str) -> dict[str, Any]:
        """``{stat: collector.value()}`` of one phase."""
        return {stat: collector.value() for stat, collector in self._of(phase).items()}

    def save(self, run_dir: str | Path, phase: str | None = None) -> list[Path]:
        """Write ``<run_dir>/<phase>_<stat>.<format>`` for ``phase`` (default: every measured phase).

        Files are replaced, so after training they hold the last epoch's statistics.

        Returns:
            The files written (for ``Saved: PATH`` lines).
        """
        phases = self.phases if phase is None else [p for p in check_phases([phase]) if p in self.phases]
        written: list[Path] = []
        for name in phases:
            written += save_collectors_data(self.collectors[name], run_dir, name, self.formats)
        return written


def check_act_hist_options(opts: Any) -> None:
    """``--act-hist`` is a mode of its own: it neither trains nor evaluates (DESIGN §7).

    Raises:
        ConfigError: it is combined with ``--evaluate`` or ``--compress``.
    """
    others = [flag for flag, on in (("--evaluate", opts.evaluate), ("--compress", bool(opts.compress))) if on]
    if others:
        raise ConfigError(
            f"--act-hist collects activation histograms and exits; it does not combine with {', '.join(others)}. "
            "Run the histograms and the evaluation/training separately (--act-hist with --resume-from measures "
            "a trained checkpoint)."
        )


def activation_histograms_mode(app: ClassifierApp) -> ClassifierResult:
    """``--act-hist PORTION``: statistics then histograms of every leaf module's activations.

    Reads ``PORTION`` (a fraction <= 1 or a sample count > 1) of a fixed, seeded subset of the
    training split with evaluation transforms, never the test set. Saves, under the run's log dir,
    ``acts_quantization_stats.yaml`` (the ranges), ``acts_histograms.pt`` (``{module: {"inputs":
    {index: hist}, "output": hist}}``, each ``hist`` with int64 ``hist`` counts, float64
    ``bin_edges`` and ``total_numel``) and, when matplotlib is installed, ``histogram_images/*.png``.
    """
    from distiller.apps.classifier import ClassifierResult
    from distiller.quantization.calibration import calibration_forward, collect_quant_stats
    from distiller.quantization.histograms import collect_histograms, save_histograms

    check_act_hist_options(app.opts)
    loaders = app._data(test_only=False)
    subset = loaders.calibration_loader(app.opts.analysis.activation_histograms)
    run_forward = calibration_forward(subset, device=app.device)
    stats_path = app.run_dir / STATS_FILE
    stats = collect_quant_stats(app.model, run_forward, save_path=stats_path)
    app.saved.append(stats_path)
    histograms = collect_histograms(app.model, run_forward, stats, nbins=HISTOGRAM_BINS)
    app.saved.extend(save_histograms(histograms, app.run_dir))
    log.info("Activation histograms of %d modules on %d training samples", len(histograms), len(subset.sampler))
    return ClassifierResult(None, saved=list(app.saved))
