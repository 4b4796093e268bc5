"""Per-channel activation statistics, collected with forward hooks.

Activation-ranked pruners (APoZ, mean activation) rank a conv's filters by statistics of the
feature map its output becomes after the activation. :class:`SummaryActivationStatsCollector`
records such a statistic for every activation module of a model while data flows through it.

Statistics are kept per *module object*, not per name: :func:`module_activation_stats` answers
"what was recorded at this module?", so a pruner finds them by following the model's structure
(the activation that consumes a conv's output) whatever the model's naming convention is. The
original located them by rewriting ``...conv1.weight`` into ``...relu1`` and only worked with that
naming.

This is the minimal collector the pruners need; the analysis issue extends it (more statistics,
CSV/xlsx output).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = [
    "ACTIVATION_CLASSES",
    "SUMMARY_FUNCTIONS",
    "SummaryActivationStatsCollector",
    "activation_channels_apoz",
    "activation_channels_l1",
    "activation_channels_means",
    "module_activation_stats",
]

ACTIVATION_CLASSES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
"""The modules a collector watches by default (the original's ``classes``)."""


# --- per-batch channel statistics ---------------------------------------------------------------


def _per_sample_channels(activation: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` over the spatial positions of each (sample, channel): ``(batch, channels)``.

    A 2-D activation ``(batch, features)`` has no spatial extent: each feature is a channel and
    its value is its own statistic (the original reduced over features here, giving one number per
    sample, which cannot rank anything).
    """
    if activation.dim() == 2:
        return fn(activation.unsqueeze(-1))
    if activation.dim() < 2:
        raise ConfigError(
            f"Channel statistics need a (batch, channels, ...) activation; got shape {tuple(activation.shape)}."
        )
    return fn(activation.reshape(activation.shape[0], activation.shape[1], -1))


def activation_channels_l1(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's L1 norm over its feature map (one value per channel)."""
    with torch.no_grad():
        return _per_sample_channels(activation, lambda x: x.abs().sum(dim=-1)).mean(dim=0).cpu()


def activation_channels_means(activation: torch.Tensor) -> torch.Tensor:
    """Batch mean of each channel's mean value over its feature map (one value per channel)."""
    with torch.no_grad():
        return _per_sample_channels(activation, lambda x: x.mean(dim=-1)).mean(dim=0).cpu()


def activation_channels_apoz(activation: torch.Tensor) -> torch.Tensor:
    """APoZ (average percentage of zeros, Hu et al. 2016) of each channel, in percent.

    100 means the channel was always zero: the least useful filter under Network Trimming.
    """
    with torch.no_grad():
        nonzero = _per_sample_channels(activation, lambda x: x.ne(0).float().mean(dim=-1))
        return 100 - nonzero.mean(dim=0).mul(100).cpu()


SUMMARY_FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "apoz_channels": activation_channels_apoz,
    "mean_channels": activation_channels_means,
    "l1_channels": activation_channels_l1,
}
"""Statistic names the collector knows without an explicit ``summary_fn``."""


# --- accumulation, keyed by module object ------------------------------------------------------


class _RunningMean:
    """Sample-weighted mean of per-batch summaries."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.count = 0

    def add(self, value: torch.Tensor, n: int) -> None:
        value = value.detach().double()
        self.total = value * n if self.total is None else self.total + value * n
        self.count += n

    def value(self) -> torch.Tensor | None:
        if self.total is None or self.count == 0:
            return None
        return (self.total / self.count).float()

    def reset(self) -> None:
        self.total = None
        self.count = 0


# module -> {stat_name: accumulator}. Weak keys: statistics die with the model. Values hold only
# tensors, never the module or the collector, so there is no reference cycle keeping a model alive.
_STATS: weakref.WeakKeyDictionary[nn.Module, dict[str, _RunningMean]] = weakref.WeakKeyDictionary()


def module_activation_stats(module: nn.Module, stat_name: str) -> torch.Tensor | None:
    """The statistic ``stat_name`` recorded at ``module`` by a collector, or ``None``."""
    acc = _STATS.get(module, {}).get(stat_name)
    return None if acc is None else acc.value()


class SummaryActivationStatsCollector:
    """Record a per-channel statistic of the outputs of a model's activation modules.

    Use it as a context manager around the batches to measure, or call :meth:`start` and
    :meth:`stop`::

        collector = SummaryActivationStatsCollector(model, "apoz_channels")
        with collector:
            for x, _ in loader:
                model(x)
        collector.value()   # {"layer1.0.relu1": tensor([...]), ...}

    Statistics accumulate across :meth:`start`/:meth:`stop` cycles until :meth:`reset`, and stay
    readable after :meth:`stop` (pruners read them later, at their epoch).

    Args:
        model: the model to watch.
        stat_name: the statistic's name; one of :data:`SUMMARY_FUNCTIONS` unless ``summary_fn`` is given.
        summary_fn: ``activation -> one value per channel`` for one batch.
        classes: module types to watch (default: ReLU, ReLU6, LeakyReLU).
        module_names: watch exactly these modules (canonical or ``module.`` names) instead of ``classes``.
    """

    def __init__(
        self,
        model: nn.Module,
        stat_name: str = "apoz_channels",
        summary_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
        classes: Sequence[type[nn.Module]] = ACTIVATION_CLASSES,
        module_names: Iterable[str] | None = None,
    ) -> None:
        if summary_fn is None:
            if stat_name not in SUMMARY_FUNCTIONS:
                raise ConfigError(
                    f"Unknown activation statistic {stat_name!r}.{did_you_mean(stat_name, list(SUMMARY_FUNCTIONS))} "
                    f"Known: {', '.join(SUMMARY_FUNCTIONS)}; or pass summary_fn."
                )
            summary_fn = SUMMARY_FUNCTIONS[stat_name]
        self.model = model
        self.stat_name = stat_name
        self.summary_fn = summary_fn
        self._modules = self._select(model, tuple(classes), module_names)
        self._acc: dict[str, _RunningMean] = {}
        for name, module in self._modules.items():
            acc = _STATS.setdefault(module, {}).setdefault(stat_name, _RunningMean())
            self._acc[name] = acc
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @staticmethod
    def _select(
        model: nn.Module, classes: tuple[type[nn.Module], ...], names: Iterable[str] | None
    ) -> dict[str, nn.Module]:
        modules = {normalize_module_name(n): m for n, m in model.named_modules() if n}
        if names is None:
            return {n: m for n, m in modules.items() if isinstance(m, classes)}
        chosen = {}
        for name in names:
            key = normalize_module_name(name)
            if key not in modules:
                raise ConfigError(f"The model has no module {name!r}.{did_you_mean(key, list(modules))}")
            chosen[key] = modules[key]
        return chosen

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> SummaryActivationStatsCollector:
        """Register the forward hooks (idempotent)."""
        if not self._handles:
            for name, module in self._modules.items():
                self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def stop(self) -> SummaryActivationStatsCollector:
        """Remove the hooks; the recorded statistics stay."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self

    def reset(self) -> SummaryActivationStatsCollector:
        """Forget what was recorded."""
        for acc in self._acc.values():
            acc.reset()
        return self

    def __enter__(self) -> SummaryActivationStatsCollector:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _hook(self, name: str) -> Callable[..., None]:
        acc = self._acc[name]
        summary_fn = self.summary_fn

        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.dim() >= 2:
                acc.add(summary_fn(output.detach()), output.shape[0])

        return hook

    # -- results --------------------------------------------------------------------------------

    def value(self) -> dict[str, torch.Tensor]:
        """``{module name: per-channel statistic}`` for the modules that saw data."""
        out = {}
        for name, acc in self._acc.items():
            v = acc.value()
            if v is not None:
                out[name] = v
        return out

    def modules(self) -> dict[str, nn.Module]:
        """The watched modules by canonical name."""
        return dict(self._modules)

    def __repr__(self) -> str:
        state = "running" if self._handles else "stopped"
        return f"SummaryActivationStatsCollector({self.stat_name!r}, {len(self._modules)} modules, {state})"
