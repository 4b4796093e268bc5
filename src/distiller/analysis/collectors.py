"""The base of the activation-statistics collectors, and the context managers that drive them.

A collector watches some modules of a model with forward hooks while data flows through it, and
turns what it saw into statistics (:meth:`ActivationStatsCollector.value`), a pandas DataFrame
(:meth:`~ActivationStatsCollector.to_dataframe`) or files (:meth:`~ActivationStatsCollector.save`).
The concrete collectors keep the original Distiller's names:

* :class:`~distiller.analysis.activations.SummaryActivationStatsCollector` — one running summary per
  module (sparsity, per-channel L1 / APoZ / mean);
* :class:`~distiller.analysis.records.RecordsActivationStatsCollector` — per-batch records;
* :class:`~distiller.analysis.raw_activations.RawActivationsCollector` — the tensors themselves.

The hook machinery (start/stop, context manager, the check against a module called twice in one
forward pass) is :class:`~distiller.quantization.calibration.ActivationHooks`, shared with the
quantization statistics and histogram collectors, so all collectors pick modules and name them the
same way: canonical names (no ``module.`` element of DataParallel), leaves only, ``nn.Identity`` skipped.

:func:`collector_context` / :func:`collectors_context` reproduce the original's lifecycle: reset and
start on entry, stop on exit (also when the block raises), and a ``None`` collector does nothing, so
a training loop can wrap a phase whether or not statistics were asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.quantization.calibration import ActivationHooks, unwrap_parallel, watched_modules
from distiller.registry import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ActivationStatsCollector", "collector_context", "collectors_context", "select_modules"]


def select_modules(
    model: nn.Module,
    classes: Sequence[type[nn.Module]] | None = None,
    module_names: Iterable[str] | None = None,
) -> dict[str, nn.Module]:
    """The modules a collector watches, by canonical name, in ``named_modules`` order.

    Args:
        model: the (unwrapped) model.
        classes: leaf module types to watch; ``None`` watches every leaf except ``nn.Identity``
            (it passes its input through, so its statistics would duplicate its producer's).
        module_names: watch exactly these modules instead (canonical or ``module.`` spellings).

    Raises:
        ConfigError: a name in ``module_names`` is not a module of the model.
    """
    if module_names is None:
        return watched_modules(model, None if classes is None else tuple(classes))
    modules = {normalize_module_name(n): m for n, m in model.named_modules() if n}
    chosen: dict[str, nn.Module] = {}
    for name in module_names:
        key = normalize_module_name(name)
        if key not in modules:
            raise ConfigError(
                f"module_names: the model has no module {name!r}.{did_you_mean(key, list(modules))} "
                "Use the names that model.named_modules() lists."
            )
        chosen[key] = modules[key]
    return chosen


class ActivationStatsCollector(ActivationHooks):
    """Base class: collect a statistic of the activations of a model's modules with forward hooks.

    Subclasses implement :meth:`on_output` (or :meth:`on_inputs`), :meth:`reset`, :meth:`value`,
    :meth:`to_dataframe` and :meth:`save`. Use a collector as a context manager, with
    :func:`collector_context`, or call :meth:`start` / :meth:`stop`; what it recorded accumulates
    across start/stop cycles until :meth:`reset`, and stays readable after :meth:`stop`.

    A module called more than once in one forward pass (a ``ReLU`` instance shared by two places)
    raises :class:`~distiller.errors.QuantizationError` while the model runs, because a per-batch
    record would silently mix two different tensors; subclasses whose statistic is a plain mean
    over all calls set :attr:`allow_reuse`.

    Args:
        model: the model whose ``forward`` is called; DataParallel wrappers are unwrapped.
        stat_name: the statistic's name (used for file names and sheet names).
        classes: leaf module types to watch; ``None``: every leaf except ``nn.Identity``.
        module_names: watch exactly these modules instead of ``classes``.
    """

    allow_reuse: bool = False
    """Whether a module may be called several times in one forward pass."""

    def __init__(
        self,
        model: nn.Module,
        stat_name: str,
        classes: Sequence[type[nn.Module]] | None = None,
        *,
        module_names: Iterable[str] | None = None,
    ) -> None:
        inner = unwrap_parallel(model)
        self.model = inner
        self.stat_name = stat_name
        self.classes = None if classes is None else tuple(classes)
        self.module_names = None if module_names is None else list(module_names)
        super().__init__(inner, select_modules(inner, self.classes, self.module_names))

    def _root_begins(self, module: nn.Module, args: Any) -> None:
        # The base class starts counting calls per forward pass here; without it, no check is made.
        if not self.allow_reuse:
            super()._root_begins(module, args)

    # -- to implement ---------------------------------------------------------------------------

    def reset(self) -> ActivationStatsCollector:
        """Forget what was recorded; returns ``self`` (``collector.reset().start()``)."""
        raise NotImplementedError

    def value(self) -> dict[str, Any]:
        """``{module name: statistic}`` for the modules that saw data, in ``named_modules`` order."""
        raise NotImplementedError

    def to_dataframe(self) -> pd.DataFrame:
        """What :meth:`value` holds, as a pandas DataFrame (the layout is the subclass's)."""
        raise NotImplementedError

    def save(self, fname: str | Path) -> Path | list[Path]:
        """Write the statistics to ``fname``; returns what was written."""
        raise NotImplementedError

    # -- convenience ----------------------------------------------------------------------------

    def start(self) -> ActivationStatsCollector:
        """Register the hooks (idempotent); returns ``self``.

        The watched modules are looked up again at each start, as the original did: a quantizer or
        a thinning step that replaced modules since the collector was built (quantization-aware
        training prepares the model at its first epoch) is then watched as it is now. Statistics
        recorded under a module name are kept.
        """
        if not self.running:
            self.modules = select_modules(self.model, self.classes, self.module_names)
            self._watch(self.modules)
        super().start()
        return self

    def _watch(self, modules: dict[str, nn.Module]) -> None:
        """Make room for the statistics of ``modules`` (called at construction and at each start)."""

    def stop(self) -> ActivationStatsCollector:
        """Remove the hooks; what was recorded stays. Returns ``self``."""
        super().stop()
        return self

    def __enter__(self) -> ActivationStatsCollector:
        return self.start()

    @property
    def running(self) -> bool:
        """Whether the hooks are registered."""
        return bool(self._handles)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}({self.stat_name!r}, {len(self.modules)} modules, {state})"


C = TypeVar("C", bound=ActivationHooks)


@contextlib.contextmanager
def collector_context(collector: C | None) -> Iterator[C | None]:
    """Reset and start ``collector`` for the block, stop it after (also when the block raises).

    ``None`` is allowed and does nothing, so a loop can wrap a phase whether or not that phase is
    measured. The quantization statistics and histogram collectors work too (a collector without
    ``reset`` is only started and stopped). Yields the collector (or ``None``).
    """
    if collector is None:
        yield None
        return
    reset = getattr(collector, "reset", None)  # the histograms collector has none: its bins are fixed
    if reset is not None:
        reset()  # not chained: the quantization statistics collector's reset() returns None
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()


@contextlib.contextmanager
def collectors_context(collectors: Mapping[str, ActivationHooks | None]) -> Iterator[Mapping[str, Any]]:
    """:func:`collector_context` for every collector of a ``{name: collector}`` dict; yields the dict.

    ``None`` values and an empty dict are allowed (the phase is not measured).
    """
    with contextlib.ExitStack() as stack:
        for collector in collectors.values():
            stack.enter_context(collector_context(collector))
        yield collectors
