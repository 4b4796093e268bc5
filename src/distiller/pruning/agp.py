"""Automated Gradual Pruning (Zhu & Gupta 2017): every pruner of the original driven by the AGP rate.

Each ``*_AGP`` class is its one-shot counterpart with the constant ``desired_sparsity`` replaced by
the cubic AGP schedule (:func:`distiller.pruning.rates.agp_target`) from ``initial_sparsity`` to
``final_sparsity`` over the policy's window -- nothing else changes, which is the point of keeping
rate and criterion apart. Arguments are the original's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from distiller.errors import ConfigError
from distiller.pruning.activation_ranked import ActivationAPoZRankedFilterPruner, ActivationMeanRankedFilterPruner
from distiller.pruning.base import Pruner, register_pruner
from distiller.pruning.element import level_mask_or_none
from distiller.pruning.filter_ranked import BernoulliFilterPruner, GradientRankedFilterPruner, RandomRankedFilterPruner
from distiller.pruning.ranked import L1RankedStructureParameterPruner, L2RankedStructureParameterPruner
from distiller.pruning.rates import AgpRate, Window

__all__ = [
    "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner_AGP",
    "AutomatedGradualPruner",
    "BernoulliFilterPruner_AGP",
    "GradientRankedFilterPruner_AGP",
    "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner_AGP",
    "RandomRankedFilterPruner_AGP",
    "use_agp_rate",
]


class _StepRate:
    """Adapts an object with the original's ``step(current, start, end, freq)`` to a rate."""

    def __init__(self, scheduler: Any) -> None:
        self.scheduler = scheduler

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float:
        w = Window.from_meta(meta)
        return self.scheduler.step(w.current, w.start, w.end, w.freq)


def use_agp_rate(
    pruner: Pruner, initial_sparsity: float, final_sparsity: float, rate_scheduler_factory: Callable = AgpRate
) -> Pruner:
    """Drive ``pruner`` by an AGP-like rate built by ``rate_scheduler_factory(initial, final)``.

    The factory is the original's hook for custom gradual schedules: it returns an object with
    ``step(current_epoch, starting_epoch, ending_epoch, frequency) -> sparsity``.
    """
    rate = rate_scheduler_factory(initial_sparsity, final_sparsity)
    if not callable(rate):
        if not hasattr(rate, "step"):
            raise ConfigError("rate_scheduler_factory must build an object with step(current, start, end, freq).")
        rate = _StepRate(rate)
    pruner.rate = rate
    pruner.initial_sparsity = initial_sparsity
    pruner.final_sparsity = final_sparsity
    return pruner


@register_pruner
class AutomatedGradualPruner(Pruner):
    """Fine-grained AGP: prune the smallest magnitudes to the AGP level of the current epoch.

    Args:
        name: instance name.
        initial_sparsity: level at the first epoch of the window.
        final_sparsity: level at the last pruning epoch of the window.
        weights: the parameters to prune.
        rate_scheduler_factory: see :func:`use_agp_rate` (Python only).
    """

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        weights: str | Iterable[str],
        rate_scheduler_factory: Callable = AgpRate,
    ) -> None:
        super().__init__(name, weights)
        use_agp_rate(self, initial_sparsity, final_sparsity, rate_scheduler_factory)

    def make_mask(self, param, param_name, target, current_mask, meta):
        return level_mask_or_none(param, target)


class _LpAGP:
    """Constructor of the Lp-ranked AGP pruners: the original's arguments plus the ranking options."""

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        group_type: str,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        noise: float = 0.0,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
    ) -> None:
        super().__init__(  # type: ignore[call-arg]
            name, group_type, 0.0, weights, group_dependency, kwargs, noise, group_size, rounding_fn
        )
        use_agp_rate(self, initial_sparsity, final_sparsity)  # type: ignore[arg-type]


class _ActivationAGP:
    """Constructor of the activation-ranked AGP pruners."""

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        group_type: str,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        activation_modules: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, group_type, 0.0, weights, group_dependency, activation_modules)  # type: ignore[call-arg]
        use_agp_rate(self, initial_sparsity, final_sparsity)  # type: ignore[arg-type]


class _FilterAGP:
    """Constructor of the filter-only AGP pruners (their one-shot classes take the same arguments)."""

    def __init__(
        self,
        name: str,
        initial_sparsity: float,
        final_sparsity: float,
        group_type: str,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
    ) -> None:
        super().__init__(name, group_type, 0.0, weights, group_dependency)  # type: ignore[call-arg]
        use_agp_rate(self, initial_sparsity, final_sparsity)  # type: ignore[arg-type]


# Each class below is "its one-shot base x the AGP rate"; the mixin supplies the AGP constructor.


@register_pruner
class L1RankedStructureParameterPruner_AGP(_LpAGP, L1RankedStructureParameterPruner):  # noqa: N801 (original name)
    """:class:`~distiller.pruning.ranked.L1RankedStructureParameterPruner` on the AGP schedule."""


@register_pruner
class L2RankedStructureParameterPruner_AGP(_LpAGP, L2RankedStructureParameterPruner):  # noqa: N801
    """:class:`~distiller.pruning.ranked.L2RankedStructureParameterPruner` on the AGP schedule."""


@register_pruner
class ActivationAPoZRankedFilterPruner_AGP(_ActivationAGP, ActivationAPoZRankedFilterPruner):  # noqa: N801
    """:class:`~distiller.pruning.activation_ranked.ActivationAPoZRankedFilterPruner` on the AGP schedule."""


@register_pruner
class ActivationMeanRankedFilterPruner_AGP(_ActivationAGP, ActivationMeanRankedFilterPruner):  # noqa: N801
    """:class:`~distiller.pruning.activation_ranked.ActivationMeanRankedFilterPruner` on the AGP schedule."""


@register_pruner
class GradientRankedFilterPruner_AGP(_FilterAGP, GradientRankedFilterPruner):  # noqa: N801
    """:class:`~distiller.pruning.filter_ranked.GradientRankedFilterPruner` on the AGP schedule."""


@register_pruner
class RandomRankedFilterPruner_AGP(_FilterAGP, RandomRankedFilterPruner):  # noqa: N801
    """:class:`~distiller.pruning.filter_ranked.RandomRankedFilterPruner` on the AGP schedule."""


@register_pruner
class BernoulliFilterPruner_AGP(_FilterAGP, BernoulliFilterPruner):  # noqa: N801
    """:class:`~distiller.pruning.filter_ranked.BernoulliFilterPruner` on the AGP schedule (growing DropFilter)."""
