"""The data-logger interface and the record conventions every logger shares.

A training loop reports what it measured (progress statistics, weights sparsity, activation
statistics, weight histograms, model buffers) to a list of loggers, and each logger decides where it
goes: the console, CSV files, TensorBoard. The method names and arguments are the original
Distiller's, so loops written for it keep working; the base class does nothing, so a logger
overrides only what its medium can show.

Conventions (shared, so the console, the CSV files and TensorBoard agree):

* A progress record is ``(prefix, {name: value})``; the prefix says which phase it belongs to
  (:data:`PHASE_PREFIXES`) and is prepended to each name to form TensorBoard tags, e.g.
  ``Performance/Training/Top1``.
* The step of a progress record is ``total * epoch + completed``: with ``total`` the number of
  minibatches of an epoch, it counts minibatches since the start of training.
* Epoch-level records (weights sparsity, activation statistics) use the epoch as their step.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name

__all__ = [
    "PHASE_PREFIXES",
    "DataLogger",
    "NullLogger",
    "StatsDict",
    "buffer_values",
    "check_stats_dict",
    "phase_of",
    "scalar_of",
    "training_step",
]

# The prefixes the loops use for each phase; ``prefix + name`` is the TensorBoard tag.
PHASE_PREFIXES: dict[str, str] = {
    "train": "Performance/Training/",
    "valid": "Performance/Validation/",
    "test": "Performance/Test/",
}

StatsDict = tuple[str, Mapping[str, Any]]


def training_step(epoch: int, completed: int, total: int) -> int:
    """The global step of a progress record: minibatches since the start of training."""
    return int(total) * int(epoch) + int(completed)


def phase_of(prefix: str) -> str:
    """``train``, ``valid`` or ``test`` for the standard prefixes; otherwise the prefix's last
    path element in lower case (``"Performance/Foo/"`` -> ``"foo"``), so a user's own prefix
    still gives a readable phase."""
    for phase, known in PHASE_PREFIXES.items():
        if prefix == known:
            return phase
    parts = [p for p in prefix.split("/") if p]
    return parts[-1].lower() if parts else ""


def scalar_of(value: Any, what: str) -> float:
    """A number for logging: Python numbers as they are, a tensor of one element as its value, and a
    larger tensor (e.g. one value per channel) as its mean.

    Raises:
        ConfigError: for anything else (a string, a dict, an empty tensor).
    """
    if isinstance(value, torch.Tensor):
        if value.numel() == 0:
            raise ConfigError(f"Cannot log {what}: the tensor is empty.")
        return float(value.detach().float().mean().item())
    if isinstance(value, numbers.Real):
        return float(value)
    raise ConfigError(
        f"Cannot log {what}: expected a number or a tensor, got {type(value).__name__}. "
        "Log nested statistics one level at a time."
    )


def check_stats_dict(stats_dict: Any) -> tuple[str, Mapping[str, Any]]:
    """Validate the original's ``(prefix, OrderedDict)`` progress record and return its parts."""
    if (
        not isinstance(stats_dict, Sequence)
        or len(stats_dict) != 2
        or not isinstance(stats_dict[0], str)
        or not isinstance(stats_dict[1], Mapping)
    ):
        raise ConfigError(
            "log_training_progress expects stats_dict = (prefix, {name: value}), e.g. "
            f"('Performance/Training/', {{'Top1': 91.2}}); got {type(stats_dict).__name__}."
        )
    return stats_dict[0], stats_dict[1]


def buffer_values(model: nn.Module, buffer_names: Sequence[str]) -> Iterable[tuple[str, str, list[float]]]:
    """``(module name, buffer name, flat values)`` for each module that holds one of ``buffer_names``.

    A "buffer" here is any tensor attribute a module holds itself (registered buffer, parameter,
    or a list of tensors such as a ``ParameterList``), looked up on every module rather than only on
    leaves, because quantization wrappers keep their scales on the wrapper, which has children.
    """
    for module_name, module in model.named_modules():
        for buffer_name in buffer_names:
            value = getattr(module, buffer_name, None)
            if isinstance(value, torch.Tensor):
                tensors: list[torch.Tensor] = [value]
            elif (
                isinstance(value, (list, tuple, nn.ParameterList))
                and value
                and all(isinstance(v, torch.Tensor) for v in value)
            ):
                tensors = list(value)
            else:
                continue
            flat = [float(x) for t in tensors for x in t.detach().reshape(-1).tolist()]
            yield normalize_module_name(module_name), buffer_name, flat


class DataLogger:
    """Receives what a training loop measures; every method is a no-op here.

    Subclasses override the records their medium can show. Loggers that hold files open them on
    first use and release them in :meth:`close`; a logger used again after :meth:`close` reopens
    (appending), so closing early never loses later records.
    """

    def log_training_progress(self, stats_dict: StatsDict, epoch: int, completed: int, total: int, freq: int) -> None:
        """Progress of a training or evaluation pass.

        Args:
            stats_dict: ``(prefix, {name: value})``, e.g. ``("Performance/Training/", {"Top1": 91.2})``.
            epoch: the epoch (``-1`` for an evaluation outside training).
            completed: minibatches completed in this pass.
            total: minibatches in the pass.
            freq: how often the loop logs (in minibatches); informative only.
        """

    def log_activation_statistic(
        self, phase: str, stat_name: str, activation_stats: Mapping[str, Any], epoch: int
    ) -> None:
        """One statistic of the activations, per module.

        Args:
            phase: ``train``, ``valid`` or ``test``.
            stat_name: the statistic, e.g. ``sparsity``.
            activation_stats: ``{module name: value}``; a value is a number or a tensor, and a tensor
                with several elements (one per channel) is logged as its mean.
            epoch: the epoch the statistic was collected in.
        """

    def log_weights_sparsity(self, model: nn.Module, epoch: int) -> None:
        """Sparsity of the model's weights at the end of ``epoch``."""

    def log_weights_distribution(
        self, named_params: Iterable[tuple[str, torch.Tensor]] | None, steps_completed: int
    ) -> None:
        """Histograms of parameter values (and gradients); ``None`` logs nothing, as in the original."""

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
        """Values of the named buffers of every module that has them (e.g. learned clipping values)."""

    def flush(self) -> None:
        """Push buffered records to their medium (a crash after this loses nothing logged before)."""

    def close(self) -> None:
        """Flush and release files; safe to call more than once."""

    def __enter__(self) -> DataLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class NullLogger(DataLogger):
    """A logger that records nothing: the default where a logger is required but none is wanted."""
