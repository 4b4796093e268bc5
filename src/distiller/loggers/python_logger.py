"""The console logger: progress lines and tables written through a :class:`logging.Logger`.

It writes at INFO through the logger it is given and configures nothing; the application decides
where INFO goes (the ``distiller`` CLI sends it to stdout and to the run's log file). The line format
is the original's, so scripts that grep training logs keep working::

    Epoch: [3][ 70/120]    Overall Loss 0.412345    Objective Loss 0.401234    Top1 88.281250    LR 0.100000
    Test: [ 5/10]    Loss 0.351234    Top1 90.625000    Top5 99.687500

Columns are separated by four spaces and the counts are right-aligned to the width of the total.
Training records (``Performance/Training/``) print as ``Epoch:`` lines; validation and test
records, or any record with ``epoch < 0``, print as ``Test:`` lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from distiller.loggers.base import PHASE_PREFIXES, DataLogger, StatsDict, buffer_values, check_stats_dict, scalar_of

__all__ = ["PythonLogger", "format_progress"]

_SEPARATOR = "    "


def _format_value(name: str, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{name} {value:,}"
    return f"{name} {scalar_of(value, name):.6f}"


def format_progress(stats_dict: StatsDict, epoch: int, completed: int, total: int) -> str:
    """One progress line in the original's format (see the module docstring)."""
    prefix, stats = check_stats_dict(stats_dict)
    width = len(str(int(total)))
    counts = f"[{int(completed):>{width}d}/{int(total):>{width}d}]"
    head = f"Epoch: [{epoch}]{counts}" if epoch >= 0 and prefix == PHASE_PREFIXES["train"] else f"Test: {counts}"
    return _SEPARATOR.join([head, *(_format_value(name, value) for name, value in stats.items())])


class PythonLogger(DataLogger):
    """Progress lines, sparsity and statistics tables at INFO on a :class:`logging.Logger`.

    Args:
        logger: where to write; by default this module's logger (``distiller.loggers.python_logger``),
            which the ``distiller`` CLI shows.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger if logger is not None else logging.getLogger(__name__)

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        self.logger.info(format_progress(stats_dict, epoch, completed, total))

    def log_activation_statistic(
        self, phase: str, stat_name: str, activation_stats: Mapping[str, Any], epoch: int
    ) -> None:
        from tabulate import tabulate

        rows = [[name, scalar_of(value, f"{stat_name} of {name}")] for name, value in activation_stats.items()]
        if not rows:
            return
        table = tabulate(rows, headers=["Layer", stat_name], tablefmt="psql", floatfmt=".2f")
        self.logger.info("Activation %s (%s, epoch %d):\n%s", stat_name, phase, epoch, table)

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        from distiller.summary import render_sparsity_summary, sparsity_summary

        self.logger.info("%s", render_sparsity_summary(sparsity_summary(model), title="Parameters:"))

    def log_model_buffers(
        self,
        model: nn.Module,
        buffer_names: Sequence[str],
        tag_prefix: str,
        epoch: int,
        completed: int,
        total: int,
        freq: int,
    ) -> None:
        from tabulate import tabulate

        rows = [
            [module, name, ", ".join(f"{v:.6g}" for v in values)]
            for module, name, values in buffer_values(model, buffer_names)
        ]
        if not rows:
            return
        table = tabulate(rows, headers=["Layer", "Buffer", "Values"], tablefmt="psql")
        width = len(str(int(total)))
        self.logger.info("%s: Epoch: [%d][%*d/%d]\n%s", tag_prefix, epoch, width, completed, total, table)
