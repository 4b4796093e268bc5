"""Analysis tools: sensitivity analysis, activation statistics, charts.

* activation statistics collected with forward hooks, with the original's names:
  :mod:`~distiller.analysis.collectors` (base class, :func:`collector_context`,
  :func:`collectors_context`), :mod:`~distiller.analysis.activations` (running summaries such as
  sparsity and per-channel APoZ, read by activation-ranked pruners), :mod:`~distiller.analysis.records`
  (per-batch records), :mod:`~distiller.analysis.raw_activations` (the tensors),
  :mod:`~distiller.analysis.collector_sets` (the ``--act-stats`` collectors per phase and their files);
  ``ActivationHistogramsCollector`` is the quantization package's.
* :mod:`~distiller.analysis.charts` — matplotlib charts of summaries, AGP schedules, training runs
  and sensitivities (matplotlib is imported only when a chart is drawn).
* sensitivity analysis: :mod:`~distiller.analysis.sensitivity` (one-shot pruning per parameter or
  coupled group and level), :mod:`~distiller.analysis.sensitivity_workers` (worker processes),
  :mod:`~distiller.analysis.sensitivity_io` (CSV/PNG), :mod:`~distiller.analysis.sensitivity_schedule`
  (per-layer AGP targets within an accuracy budget).
"""

from distiller.analysis.activations import (
    CollectorDirection,
    SummaryActivationStatsCollector,
    activation_channels_apoz,
    activation_channels_l1,
    activation_channels_means,
    activation_sparsity_ofm,
    module_activation_stats,
)
from distiller.analysis.charts import (
    agp_schedule,
    load_training_progress,
    plot_agp_schedule,
    plot_compute_summary,
    plot_run_histories,
    plot_sensitivities,
    plot_sparsity_summary,
    save_figure,
)
from distiller.analysis.collector_sets import create_activation_stats_collectors, save_collectors_data
from distiller.analysis.collectors import ActivationStatsCollector, collector_context, collectors_context
from distiller.analysis.raw_activations import RawActivationsCollector
from distiller.analysis.records import RecordsActivationStatsCollector
from distiller.analysis.sensitivity import (
    CachedEvaluation,
    perform_sensitivity_analysis,
    sensitivity_levels,
    sensitivity_params,
)
from distiller.analysis.sensitivity_io import load_sensitivities_csv, sensitivities_to_csv, sensitivities_to_png
from distiller.analysis.sensitivity_schedule import schedule_from_targets, sensitivity_targets
from distiller.quantization.histograms import ActivationHistogramsCollector

__all__ = [
    "ActivationHistogramsCollector",
    "ActivationStatsCollector",
    "CollectorDirection",
    "RawActivationsCollector",
    "RecordsActivationStatsCollector",
    "SummaryActivationStatsCollector",
    "activation_channels_apoz",
    "activation_channels_l1",
    "activation_channels_means",
    "activation_sparsity_ofm",
    "collector_context",
    "collectors_context",
    "create_activation_stats_collectors",
    "module_activation_stats",
    "save_collectors_data",
    "agp_schedule",
    "load_training_progress",
    "plot_agp_schedule",
    "plot_compute_summary",
    "plot_run_histories",
    "plot_sensitivities",
    "plot_sparsity_summary",
    "save_figure",
    "CachedEvaluation",
    "load_sensitivities_csv",
    "perform_sensitivity_analysis",
    "schedule_from_targets",
    "sensitivities_to_csv",
    "sensitivities_to_png",
    "sensitivity_levels",
    "sensitivity_params",
    "sensitivity_targets",
]
