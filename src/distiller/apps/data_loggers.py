"""The classifier app's data loggers: which ones a run gets, and the epoch-level records it sends.

Every run logs to the console (:class:`~distiller.loggers.PythonLogger`, INFO on the
``distiller.progress`` logger, which the CLI sends to stderr and the run's log file, keeping stdout
for results as DESIGN §7 asks) and to CSV files in its log dir; TensorBoard event files go to the log
dir too unless ``--no-tensorboard`` (or tensorboard is not installed: then a warning, once).

The console gets every progress line (training, validation and test, every ``--print-freq``
minibatches). The file loggers get the training progress at the same rate, but only one record per
validation or test pass: its final means, placed on the training-step axis at the end of the epoch
(``step = steps_per_epoch * (epoch + 1)``), so TensorBoard draws one validation point per epoch
under the training curve instead of partial running means.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from distiller.apps.loops import EvalResult, log_progress
from distiller.apps.options import ClassifierOptions
from distiller.loggers import CsvLogger, DataLogger, PythonLogger, TensorBoardLogger, tensorboard_available

__all__ = [
    "close_loggers",
    "console_loggers",
    "create_loggers",
    "file_loggers",
    "log_epoch_weights",
    "log_eval_summary",
]

log = logging.getLogger(__name__)
PROGRESS_LOGGER = "distiller.progress"
"""The logger of per-batch progress lines and per-epoch tables (the CLI shows it on stderr)."""

_warned_no_tensorboard = False


def create_loggers(run_dir: Path, opts: ClassifierOptions) -> list[DataLogger]:
    """The loggers of one run: console always, CSV in ``run_dir`` always, TensorBoard in ``run_dir``
    unless ``opts.analysis.tensorboard`` is False or tensorboard is missing."""
    global _warned_no_tensorboard
    loggers: list[DataLogger] = [PythonLogger(logging.getLogger(PROGRESS_LOGGER)), CsvLogger(logdir=run_dir)]
    if opts.analysis.tensorboard:
        if tensorboard_available():
            loggers.append(TensorBoardLogger(run_dir))
        elif not _warned_no_tensorboard:
            _warned_no_tensorboard = True
            log.warning(
                "TensorBoard logging is off: the 'tensorboard' package is not installed "
                "(pip install tensorboard). Pass --no-tensorboard to silence this warning."
            )
    return loggers


def console_loggers(loggers: Sequence[DataLogger]) -> list[DataLogger]:
    """The loggers that print: they get every progress line of validation and test passes."""
    return [lg for lg in loggers if isinstance(lg, PythonLogger)]


def file_loggers(loggers: Sequence[DataLogger]) -> list[DataLogger]:
    """The loggers that record to files: they get one summary per validation or test pass."""
    return [lg for lg in loggers if not isinstance(lg, PythonLogger)]


def log_eval_summary(
    loggers: Sequence[DataLogger], phase: str, result: EvalResult, epoch: int, completed: int, total: int
) -> None:
    """The final ``Loss``/``Top1``/``Top5`` of an evaluation pass as one record for the file loggers."""
    stats = {"Loss": result.loss, "Top1": result.top1, "Top5": result.top5}
    log_progress(file_loggers(loggers), phase, stats, epoch, completed, total, 0)


def log_epoch_weights(loggers: Sequence[DataLogger], model: nn.Module, epoch: int, step: int, param_hist: bool) -> None:
    """End of an epoch: weights sparsity (all loggers) and, with ``--param-hist``, weight histograms."""
    for logger in loggers:
        logger.log_weights_sparsity(model, epoch)
        if param_hist:
            logger.log_weights_distribution(model.named_parameters(), step)


def close_loggers(loggers: Sequence[DataLogger]) -> None:
    """Flush and close every logger (each reopens if it is used again)."""
    for logger in loggers:
        logger.close()
