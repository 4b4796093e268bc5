"""The CSV logger: long-format tables that notebooks load with ``pandas.read_csv``.

Every file is appended to row by row and flushed after each call, so a run that crashes keeps the
history up to its last record, and a resumed run that logs to the same folder continues the file.
Long format (one value per row) means runs with different loss components or layers still stack
into one DataFrame: ``pd.concat`` several runs' files and pivot on ``metric``.

Files (``<prefix>_<name>.csv`` when ``fname_prefix`` is given):

``training_progress.csv``
    ``phase,epoch,completed,total,step,metric,value`` with ``phase`` ``train``/``valid``/``test``
    and ``step = total * epoch + completed``.
``weights_sparsity.csv``
    ``epoch,parameter,shape,numel,nnz,sparsity`` (sparsity in percent), one row per weight tensor
    and a last ``total`` row per epoch.
``activation_statistics.csv``
    ``phase,epoch,statistic,module,value``.
``<buffer name>.csv`` (one per logged buffer)
    ``epoch,completed,total,step,module,index,value``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.loggers.base import (
    DataLogger,
    StatsDict,
    buffer_values,
    check_stats_dict,
    phase_of,
    scalar_of,
    training_step,
)
from distiller.naming import normalize_module_name
from distiller.sparsity import metrics as M

__all__ = [
    "ACTIVATIONS_COLUMNS",
    "BUFFER_COLUMNS",
    "CsvLogger",
    "PROGRESS_COLUMNS",
    "SPARSITY_COLUMNS",
]

PROGRESS_COLUMNS = ("phase", "epoch", "completed", "total", "step", "metric", "value")
SPARSITY_COLUMNS = ("epoch", "parameter", "shape", "numel", "nnz", "sparsity")
ACTIVATIONS_COLUMNS = ("phase", "epoch", "statistic", "module", "value")
BUFFER_COLUMNS = ("epoch", "completed", "total", "step", "module", "index", "value")


class CsvLogger(DataLogger):
    """Writes training progress, weights sparsity, activation statistics and buffers as CSV.

    Args:
        fname_prefix: prepended to each file name (``<prefix>_training_progress.csv``), so several
            runs can share a folder.
        logdir: the folder (created on first write).
    """

    def __init__(self, fname_prefix: str = "", logdir: str | os.PathLike = ".") -> None:
        self.fname_prefix = fname_prefix
        self.logdir = Path(logdir)
        self._files: dict[str, tuple[IO[str], Any]] = {}

    def path(self, name: str) -> Path:
        """The path of the file ``name`` (without ``.csv``) in this logger's folder."""
        stem = f"{self.fname_prefix}_{name}" if self.fname_prefix else name
        return self.logdir / f"{stem}.csv"

    def _writer(self, name: str, columns: Sequence[str]) -> Any:
        """A CSV writer appending to ``name``.csv, writing the header if the file is new or empty."""
        if name in self._files:
            return self._files[name][1]
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            f = open(path, "a", newline="")  # noqa: SIM115 (kept open across calls; closed in close())
        except OSError as exc:
            raise ConfigError(f"Cannot write {path}: {exc.strerror}. Choose a writable log folder.") from exc
        writer = csv.writer(f)
        if f.tell() == 0:
            writer.writerow(columns)
        self._files[name] = (f, writer)
        return writer

    def _flush(self, name: str) -> None:
        self._files[name][0].flush()

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        prefix, stats = check_stats_dict(stats_dict)
        phase = phase_of(prefix)
        step = training_step(epoch, completed, total)
        writer = self._writer("training_progress", PROGRESS_COLUMNS)
        for metric, value in stats.items():
            writer.writerow([phase, epoch, completed, total, step, metric, scalar_of(value, metric)])
        self._flush("training_progress")

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        writer = self._writer("weights_sparsity", SPARSITY_COLUMNS)
        numel_total = nnz_total = 0
        for name, tensor in M.model_params(model):
            numel = tensor.numel()
            nnz = int(torch.count_nonzero(tensor).item())
            numel_total += numel
            nnz_total += nnz
            shape = "x".join(str(d) for d in tensor.shape)
            writer.writerow([epoch, normalize_module_name(name), shape, numel, nnz, 100.0 * (1 - nnz / numel)])
        total_sparsity = 100.0 * (1 - nnz_total / numel_total) if numel_total else 0.0
        writer.writerow([epoch, "total", "-", numel_total, nnz_total, total_sparsity])
        self._flush("weights_sparsity")

    def log_activation_statistic(
        self, phase: str, stat_name: str, activation_stats: Mapping[str, Any], epoch: int
    ) -> None:
        writer = self._writer("activation_statistics", ACTIVATIONS_COLUMNS)
        for module, value in activation_stats.items():
            writer.writerow([phase, epoch, stat_name, module, scalar_of(value, f"{stat_name} of {module}")])
        self._flush("activation_statistics")

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
        step = training_step(epoch, completed, total)
        written = set()
        for module, buffer_name, values in buffer_values(model, buffer_names):
            writer = self._writer(buffer_name, BUFFER_COLUMNS)
            for index, value in enumerate(values):
                writer.writerow([epoch, completed, total, step, module, index, value])
            written.add(buffer_name)
        for name in written:
            self._flush(name)

    def flush(self) -> None:
        for f, _ in self._files.values():
            f.flush()

    def close(self) -> None:
        for f, _ in self._files.values():
            f.close()
        self._files.clear()
