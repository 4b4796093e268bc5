"""Data loggers: where a training loop's measurements go (console, CSV files, TensorBoard).

A loop calls the same methods on every logger in a list; see :class:`DataLogger` for the interface
and ``docs/analysis/loggers.md`` for what each logger writes.
"""

from distiller.loggers.base import PHASE_PREFIXES, DataLogger, NullLogger, phase_of, training_step
from distiller.loggers.csv_logger import CsvLogger
from distiller.loggers.python_logger import PythonLogger, format_progress
from distiller.loggers.tensorboard_logger import TensorBoardLogger, tensorboard_available

__all__ = [
    "PHASE_PREFIXES",
    "CsvLogger",
    "DataLogger",
    "NullLogger",
    "PythonLogger",
    "TensorBoardLogger",
    "format_progress",
    "phase_of",
    "tensorboard_available",
    "training_step",
]
