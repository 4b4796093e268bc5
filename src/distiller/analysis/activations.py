"""Running summaries of activations: :class:`SummaryActivationStatsCollector`.

A summary collector keeps one number (feature-map sparsity) or one vector (a per-channel L1 norm,
APoZ or mean) per watched module: the batch-size-weighted mean of a summary function over every
batch it saw. The original's classifier app collected four such statistics per phase
(``--act-stats``), and its activation-ranked pruners (APoZ, mean activation) ranked filters by them.

Pruners find the statistics by *module object*, not by name: :func:`module_activation_stats`
answers "what was recorded at this module?", so a pruner follows the model's structure (the
activation that consumes a conv's output) whatever the naming convention. The original located
them by rewriting ``...conv1.weight`` into ``...relu1`` and only worked with that naming. Each
collector owns its accumulators; a collector built with ``publish=True`` (the default) is the one
:func:`module_activation_stats` reads for its statistic, so analysis collectors built with
``publish=False`` (the ``--act-stats`` ones) never change what a pruner ranks by.

The per-batch math lives in :mod:`distiller.analysis.summary_functions` (re-exported here).
"""

from __future__ import annotations

import enum
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from distiller.analysis.collector_files import excel_sheet_names, table_path, write_csv, write_workbook
from distiller.analysis.collectors import ActivationStatsCollector
from distiller.analysis.summary_functions import (
    SUMMARY_FUNCTIONS,
    activation_channels_apoz,
    activation_channels_l1,
    activation_channels_means,
    activation_sparsity_ofm,
)
from distiller.errors import ConfigError
from distiller.registry import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACTIVATION_CLASSES",
    "SUMMARY_FUNCTIONS",
    "CollectorDirection",
    "SummaryActivationStatsCollector",
    "activation_channels_apoz",
    "activation_channels_l1",
    "activation_channels_means",
    "activation_sparsity_ofm",
    "module_activation_stats",
]

ACTIVATION_CLASSES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU)
"""The modules a summary collector watches by default (the original's ``classes``)."""


class CollectorDirection(enum.Enum):
    """Which side of a module a summary collector measures (the original's enum and aliases)."""

    OUT = "out"
    OUTPUT = "out"
    OFM = "out"
    IN = "in"
    INPUT = "in"
    IFM = "in"

    @classmethod
    def parse(cls, value: CollectorDirection | str) -> CollectorDirection:
        """The direction for an enum member or a name (``"out"``, ``"output"``, ``"ofm"``, ``"in"``, ...).

        Raises:
            ConfigError: an unknown name.
        """
        if isinstance(value, cls):
            return value
        key = str(value).strip().upper()
        if key in cls.__members__:
            return cls.__members__[key]
        raise ConfigError(
            f"collector_direction: unknown direction {value!r}; use 'out' (the module's output feature map) "
            "or 'in' (its inputs)."
        )


# --- accumulation ---------------------------------------------------------------------------------


class _RunningMean:
    """Sample-weighted mean of per-batch summaries (float64 sums)."""

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


# module -> {stat_name: the publishing collector's accumulator}. Weak keys: statistics die with the
# model. Values hold only tensors, never the module or the collector, so nothing keeps a model alive.
_PUBLISHED: weakref.WeakKeyDictionary[nn.Module, dict[str, _RunningMean]] = weakref.WeakKeyDictionary()


def module_activation_stats(module: nn.Module, stat_name: str) -> torch.Tensor | None:
    """The statistic ``stat_name`` recorded at ``module`` by the latest publishing collector, or ``None``."""
    acc = _PUBLISHED.get(module, {}).get(stat_name)
    return None if acc is None else acc.value()


# --- the collector ------------------------------------------------------------------------------


class SummaryActivationStatsCollector(ActivationStatsCollector):
    """Batch-size-weighted running mean of a summary of each watched module's activations.

    Use it as a context manager around the batches to measure, or call :meth:`start` and
    :meth:`stop`::

        collector = SummaryActivationStatsCollector(model, "apoz_channels")
        with collector, torch.no_grad():
            for x, _ in loader:
                model(x)
        collector.value()   # {"layer1.0.relu1": tensor([...]), ...}
        collector.save("apoz.xlsx")   # or "apoz.csv"

    Statistics accumulate across :meth:`start`/:meth:`stop` cycles until :meth:`reset`, and stay
    readable after :meth:`stop` (pruners read them later, at their epoch).

    Only tensors with a batch and a channel dimension (``dim() >= 2``) are summarized. A module
    called several times in one forward pass (a shared ``ReLU``, as in torchvision's ResNet blocks)
    is allowed: its statistic is the mean over all calls.

    Args:
        model: the model to watch (DataParallel wrappers are unwrapped).
        stat_name: the statistic's name; one of :data:`SUMMARY_FUNCTIONS` unless ``summary_fn`` is given.
        summary_fn: ``activation -> summary`` of one batch (a scalar or one value per channel).
        classes: module types to watch (default: ReLU, ReLU6, LeakyReLU; ``None``: every leaf).
        collector_direction: ``"out"`` summarizes each module's output, ``"in"`` its inputs
            (measured before the module runs, so an in-place activation has not yet overwritten them).
        inputs_consolidate_func: with ``"in"``, joins a module's several tensor inputs into one.
        module_names: watch exactly these modules (canonical or ``module.`` names) instead of ``classes``.
        publish: make these statistics the ones :func:`module_activation_stats` (and so the
            activation-ranked pruners) read; the latest publishing collector of a statistic wins.

    Raises:
        ConfigError: an unknown ``stat_name`` without ``summary_fn``, an unknown direction or module name.
    """

    allow_reuse = True

    def __init__(
        self,
        model: nn.Module,
        stat_name: str = "apoz_channels",
        summary_fn: Callable[[torch.Tensor], Any] | None = None,
        classes: Sequence[type[nn.Module]] | None = ACTIVATION_CLASSES,
        collector_direction: CollectorDirection | str = CollectorDirection.OUT,
        inputs_consolidate_func: Callable[[Sequence[torch.Tensor]], torch.Tensor] = torch.cat,
        *,
        module_names: Iterable[str] | None = None,
        publish: bool = True,
    ) -> None:
        if summary_fn is None:
            if stat_name not in SUMMARY_FUNCTIONS:
                raise ConfigError(
                    f"Unknown activation statistic {stat_name!r}.{did_you_mean(stat_name, list(SUMMARY_FUNCTIONS))} "
                    f"Known: {', '.join(SUMMARY_FUNCTIONS)}; or pass summary_fn."
                )
            summary_fn = SUMMARY_FUNCTIONS[stat_name]
        self.collector_direction = CollectorDirection.parse(collector_direction)
        super().__init__(model, stat_name, classes, module_names=module_names)
        self.summary_fn = summary_fn
        self.inputs_consolidate_func = inputs_consolidate_func
        self.publish = publish
        self._acc: dict[str, _RunningMean] = {}
        self._watch(self.modules)

    def _watch(self, modules: dict[str, nn.Module]) -> None:
        for name, module in modules.items():
            acc = self._acc.setdefault(name, _RunningMean())
            if self.publish:
                _PUBLISHED.setdefault(module, {})[self.stat_name] = acc

    # -- hooks ----------------------------------------------------------------------------------

    def on_output(self, name: str, output: Any) -> None:
        if self.collector_direction is CollectorDirection.OUT:
            self._add(name, output)

    def on_inputs(self, name: str, args: tuple) -> None:
        if self.collector_direction is not CollectorDirection.IN:
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) == 1:
            self._add(name, tensors[0])
        elif tensors:
            with torch.no_grad():
                self._add(name, self.inputs_consolidate_func(tensors))

    def _add(self, name: str, tensor: Any) -> None:
        if isinstance(tensor, torch.Tensor) and tensor.dim() >= 2:
            with torch.no_grad():
                summary = torch.as_tensor(self.summary_fn(tensor.detach()))
            self._acc[name].add(summary.cpu(), tensor.shape[0])

    # -- results --------------------------------------------------------------------------------

    def reset(self) -> SummaryActivationStatsCollector:
        """Forget what was recorded."""
        for acc in self._acc.values():
            acc.reset()
        return self

    def all_reduce(self) -> SummaryActivationStatsCollector:
        """Combine the statistics of every rank of a distributed (DDP) job; a no-op in a single process.

        Each rank records its own share of the data; pruners that rank channels by these statistics
        must see the whole data, or the ranks would prune differently. Call it on every rank after
        :meth:`stop` and before the statistics are read; then every rank holds the same means.
        """
        from distiller.distributed.stats import all_reduce_weighted_sums

        all_reduce_weighted_sums([self._acc[name] for name in sorted(self._acc)])
        return self

    def value(self) -> dict[str, torch.Tensor]:
        """``{module name: statistic}`` (a 0-d or per-channel float tensor) for the modules that saw data."""
        out = {}
        for name, acc in self._acc.items():
            v = acc.value()
            if v is not None:
                out[name] = v
        return out

    def to_dataframe(self) -> pd.DataFrame:
        """One row per module (index ``module``).

        A scalar statistic (``sparsity_ofm``) is one column named after it; a per-channel one has a
        column per channel index ``0, 1, ...``, and modules with fewer channels leave the last
        columns empty (NaN).
        """
        import pandas as pd

        values = self.value()
        index = pd.Index(list(values), name="module")
        if all(v.dim() == 0 for v in values.values()):
            return pd.DataFrame({self.stat_name: [float(v) for v in values.values()]}, index=index)
        rows = [v.reshape(-1).tolist() for v in values.values()]
        width = max((len(r) for r in rows), default=0)
        return pd.DataFrame([r + [float("nan")] * (width - len(r)) for r in rows], index=index)

    def save(self, fname: str | Path) -> Path:
        """Write :meth:`to_dataframe` to ``fname``: ``.xlsx`` (one sheet named after the statistic;
        no extension means ``.xlsx``) or ``.csv``. Returns the path written.

        Raises:
            ConfigError: another extension, or ``.xlsx`` without openpyxl installed.
            ExportError: the file cannot be written.
        """
        path, fmt = table_path(fname)
        frame = self.to_dataframe()
        if fmt == "csv":
            return write_csv(frame, path)
        return write_workbook({excel_sheet_names([self.stat_name])[self.stat_name]: frame}, path)
