"""The TensorBoard logger: scalars and histograms through ``torch.utils.tensorboard``.

Tags (the original's, so dashboards and notebooks built for it still find their curves):

* progress: ``<prefix><name>`` at step ``total * epoch + completed``, e.g.
  ``Performance/Training/Overall Loss``, ``Performance/Training/L1Regularizer_loss``,
  ``Performance/Validation/Top1``;
* weights sparsity (percent, step = epoch): ``sparsity/weights/<param>`` (elements),
  ``sparsity-2D/weights/<param>`` (all-zero kernels of a 4-D weight, all-zero rows of a 2-D one),
  ``sparsity/weights/total``;
* activation statistics (step = epoch): ``<stat>/activations/<phase>/<module>``, a tensor of
  per-channel values logged as its mean;
* histograms: ``<param>`` and ``<param>/grad``;
* buffers: ``<tag_prefix>/<module>/<buffer>`` (``/<index>`` appended for multi-element buffers).

TensorBoard is an optional dependency (``pip install tensorboard``, or the ``analysis`` extra); it
is imported when the first record is written, and the event file is created then too, so a run
that logs nothing leaves no empty event file behind.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.loggers.base import (
    DataLogger,
    StatsDict,
    buffer_values,
    check_stats_dict,
    scalar_of,
    training_step,
)
from distiller.naming import normalize_module_name
from distiller.sparsity import metrics as M

__all__ = ["TensorBoardLogger", "tensorboard_available"]


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (which ``torch.utils.tensorboard`` needs) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class TensorBoardLogger(DataLogger):
    """Writes TensorBoard event files into ``logdir``.

    Args:
        logdir: the folder of the event files (TensorBoard's ``--logdir`` or one run below it).

    Raises:
        ConfigError: when the ``tensorboard`` package is not installed.
    """

    def __init__(self, logdir: str | os.PathLike) -> None:
        if not tensorboard_available():
            raise ConfigError(
                "TensorBoard logging needs the 'tensorboard' package, which is not installed: "
                "pip install tensorboard (or pip install 'distiller-nn[analysis]'), or turn it off "
                "(--no-tensorboard)."
            )
        self.logdir = Path(logdir)
        self._writer: Any = None

    @property
    def writer(self) -> Any:
        """The ``SummaryWriter``, created (with its event file) on first use."""
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.logdir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(self.logdir))
        return self._writer

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        prefix, stats = check_stats_dict(stats_dict)
        step = training_step(epoch, completed, total)
        for name, value in stats.items():
            self.writer.add_scalar(prefix + name, scalar_of(value, name), step)
        self.flush()

    def log_activation_statistic(
        self, phase: str, stat_name: str, activation_stats: Mapping[str, Any], epoch: int
    ) -> None:
        group = f"{stat_name}/activations/{phase}/"
        for module, value in activation_stats.items():
            self.writer.add_scalar(group + str(module), scalar_of(value, f"{stat_name} of {module}"), epoch)
        self.flush()

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        numel_total = nnz_total = 0
        for raw_name, tensor in M.model_params(model):
            name = normalize_module_name(raw_name)
            nnz = int(torch.count_nonzero(tensor).item())
            numel_total += tensor.numel()
            nnz_total += nnz
            self.writer.add_scalar(f"sparsity/weights/{name}", 100.0 * (1 - nnz / tensor.numel()), epoch)
            self.writer.add_scalar(f"sparsity-2D/weights/{name}", 100.0 * M.sparsity_2D(tensor), epoch)
        if numel_total:
            self.writer.add_scalar("sparsity/weights/total", 100.0 * (1 - nnz_total / numel_total), epoch)
        self.flush()

    def log_weights_distribution(
        self, named_params: Iterable[tuple[str, torch.Tensor]] | None, steps_completed: int
    ) -> None:
        if named_params is None:
            return
        for raw_name, param in named_params:
            name = normalize_module_name(raw_name)
            self.writer.add_histogram(name, param.detach().float().cpu(), steps_completed)
            if param.grad is not None:
                self.writer.add_histogram(f"{name}/grad", param.grad.detach().float().cpu(), steps_completed)
        self.flush()

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
        for module, buffer_name, values in buffer_values(model, buffer_names):
            tag = "/".join(p for p in (tag_prefix.rstrip("/"), module, buffer_name) if p)
            if len(values) == 1:
                self.writer.add_scalar(tag, values[0], step)
            else:
                for index, value in enumerate(values):
                    self.writer.add_scalar(f"{tag}/{index}", value, step)
        self.flush()

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
