"""Analysis tools: activation statistics (and, later, sensitivity analysis).

* :mod:`~distiller.analysis.activations` — per-channel activation statistics collected with
  forward hooks (:class:`SummaryActivationStatsCollector`), read by activation-ranked pruners.
"""

from distiller.analysis.activations import (
    SummaryActivationStatsCollector,
    activation_channels_apoz,
    activation_channels_l1,
    activation_channels_means,
    module_activation_stats,
)

__all__ = [
    "SummaryActivationStatsCollector",
    "activation_channels_apoz",
    "activation_channels_l1",
    "activation_channels_means",
    "module_activation_stats",
]
