"""Rate schedules: how much to prune (or which threshold to use) at a given point of training.

A rate schedule is a pure function of the position in a pruning window -- ``(current, start, end,
frequency)`` in epochs, or the same four numbers in steps -- to a target (a sparsity level or a
threshold). Keeping them pure and separate from the mask functions is what lets one pruner class
be "level criterion x AGP rate x filter granularity" instead of one hand-written class per
combination, as in the original.

The :class:`Window` helper reads the window out of a pruner's ``meta`` dict (the scheduler's policy
metadata), using the step keys when the policy was scheduled in steps.

The small callable classes at the end (:class:`ConstantRate`, :class:`AgpRate`, ...) bind the
schedule's hyper-parameters so that a pruner holds one object that maps ``(param_name, meta)`` to
its target.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from distiller.distributed.rng import same_on_all_ranks
from distiller.errors import ConfigError, ScheduleError

__all__ = [
    "AgpPruningRate",
    "AgpRate",
    "BaiduRate",
    "ConstantRate",
    "PerParamRate",
    "RandomRangeRate",
    "Rate",
    "Window",
    "agp_target",
    "baidu_threshold",
    "linear_growth",
    "random_level",
]


# --- pure functions ---------------------------------------------------------------------------


def agp_target(initial: float, final: float, current: int, start: int, end: int, freq: int = 1) -> float:
    """The AGP (Zhu & Gupta, 2017) cubic sparsity target, with the original Distiller's window semantics.

    ``span = ((end - start - 1) // freq) * freq`` is the distance from ``start`` to the *last* epoch
    at which the policy actually runs (``end`` is exclusive), so the final sparsity is reached on
    that last pruning epoch rather than never: with start 0, end 30, freq 2 the pruner runs at
    0, 2, ..., 28 and reaches ``final`` at 28. The same function serves step-based windows.

    Beyond the window the progress is clamped to 1 (the original would overshoot ``final``), which
    changes nothing inside the window.

    Raises:
        ScheduleError: the window has no room for a gradual schedule (``span <= 0``).
    """
    span = ((end - start - 1) // freq) * freq
    if span <= 0:
        raise ScheduleError(
            f"An AGP schedule needs at least two pruning points, but the window starting {start}, ending {end} "
            f"(exclusive) with frequency {freq} has span {span}. Make ending_epoch - starting_epoch - 1 >= frequency."
        )
    progress = min(max((current - start) / span, 0.0), 1.0)
    return final + (initial - final) * (1.0 - progress) ** 3


def baidu_threshold(
    q: float, ramp_epoch_offset: int, ramp_slope_mult: float, current: int, start: int, end: int, freq: int = 1
) -> float:
    """The threshold ramp of Narang et al. 2017 ("Exploring Sparsity in RNNs"), per epoch as in the original.

    The ramp point is ``start + ramp_epoch_offset``. The threshold grows linearly with
    ``start_slope = 2 q freq / (2 (ramp - start) + 3 (end - ramp))`` until the ramp point and with
    ``start_slope * ramp_slope_mult`` after it, so that it ends near ``q`` (in the paper, the 90th
    percentile of |w|). The paper ramps per training step; pass step counts for that.

    Raises:
        ScheduleError: the window makes the start slope's denominator zero.
    """
    ramp = start + ramp_epoch_offset
    denominator = 2 * (ramp - start) + 3 * (end - ramp)
    if denominator == 0:
        raise ScheduleError(
            f"BaiduRNNPruner: ramp_epoch_offset {ramp_epoch_offset} with the window [{start}, {end}) makes the "
            "start slope infinite (2 * offset + 3 * (end - ramp) == 0)."
        )
    start_slope = (2 * q * freq) / denominator
    ramp_slope = start_slope * ramp_slope_mult
    if current < ramp:
        return start_slope * (current - start + 1) / freq
    return (start_slope * (ramp - start + 1) + ramp_slope * (current - ramp + 1)) / freq


def random_level(lo: float, hi: float, generator: torch.Generator | random.Random | None = None) -> float:
    """A level drawn uniformly from ``[lo, hi]`` (the original's ``RandomLevelStructureParameterPruner``)."""
    # In a distributed run every rank takes rank 0's level (see distiller.distributed.rng).
    if isinstance(generator, random.Random):
        return same_on_all_ranks(torch.tensor(generator.uniform(lo, hi), dtype=torch.float64)).item()
    u = same_on_all_ranks(torch.rand((), generator=generator)).item()
    return lo + (hi - lo) * u


def linear_growth(value: float, multiplier: float, current: int, start: int) -> float:
    """``value`` grown linearly per epoch: ``value * ((current - start) * multiplier + 1)``.

    The original ``SplicingPruner`` grows its sensitivity this way when ``sensitivity_multiplier > 0``.
    """
    if multiplier <= 0:
        return value
    return value * ((current - start) * multiplier + 1)


# --- the position in a window -------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Where a policy is in its window: ``current`` in ``[start, end)`` every ``freq``.

    ``unit`` is ``"epoch"`` or ``"step"``.
    """

    current: int
    start: int
    end: int
    freq: int = 1
    unit: str = "epoch"

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> Window:
        """Read the window from a pruner's ``meta``.

        Step keys (``current_step``, ``starting_step``, ``ending_step``, and ``step_frequency`` or
        ``frequency``) win when present, so that AGP and the Baidu ramp run per step when the
        policy was scheduled in steps (the paper's setting) and per epoch otherwise (the original's).

        Raises:
            ScheduleError: the window keys are missing.
        """
        meta = meta or {}
        if meta.get("current_step") is not None and meta.get("starting_step") is not None:
            freq = meta.get("step_frequency") or meta.get("frequency") or 1
            return cls(
                int(meta["current_step"]), int(meta["starting_step"]), int(meta["ending_step"]), int(freq), "step"
            )
        missing = [k for k in ("current_epoch", "starting_epoch", "ending_epoch") if meta.get(k) is None]
        if missing:
            raise ScheduleError(
                f"This pruner follows a schedule and needs {', '.join(missing)} in its meta; run it from a "
                "PruningPolicy bound to an epoch window, or pass the window to distiller.pruning.prune(meta=...)."
            )
        freq = meta.get("frequency") or 1
        return cls(int(meta["current_epoch"]), int(meta["starting_epoch"]), int(meta["ending_epoch"]), int(freq))


# --- bound rate objects -------------------------------------------------------------------------


class Rate(Protocol):
    """Maps a parameter and the policy meta to a target (sparsity or threshold); ``None`` skips the parameter."""

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float | None: ...


def check_fraction(value: float, what: str) -> float:
    """``value`` as a float in [0, 1], else :class:`ConfigError` naming ``what``."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number in [0, 1], got {value!r}.") from None
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"{what} must be in [0, 1], got {value}.")
    return value


class ConstantRate:
    """The same target for every parameter and every epoch (``desired_sparsity``)."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"ConstantRate({self.value})"


class PerParamRate:
    """A target per parameter, from a ``{name: value}`` dict with an optional ``'*'`` default.

    The original's ``levels``, ``thresholds`` and ``sensitivities`` arguments. Names may carry
    ``module.`` elements; parameters without an entry (and no ``'*'``) are skipped.
    """

    def __init__(self, values: Mapping[str, float], what: str) -> None:
        from distiller.naming import normalize_module_name

        if not isinstance(values, Mapping):
            raise ConfigError(f"{what} must be a mapping {{parameter name: value}}, got {type(values).__name__}.")
        self.what = what
        self.values = {("*" if k == "*" else normalize_module_name(k)): v for k, v in values.items()}

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float | None:
        return self.values.get(param_name, self.values.get("*"))

    def __repr__(self) -> str:
        return f"PerParamRate({self.what}={self.values})"


class AgpRate:
    """AGP cubic sparsity from ``initial_sparsity`` to ``final_sparsity`` over the policy's window."""

    def __init__(self, initial_sparsity: float, final_sparsity: float) -> None:
        initial = check_fraction(initial_sparsity, "initial_sparsity")
        final = check_fraction(final_sparsity, "final_sparsity")
        if final <= initial:
            raise ConfigError(
                f"final_sparsity ({final}) must be greater than initial_sparsity ({initial}) for an AGP schedule."
            )
        self.initial_sparsity = initial
        self.final_sparsity = final

    def step(self, current: int, start: int, end: int, freq: int) -> float:
        """The original ``AgpPruningRate.step`` signature."""
        return agp_target(self.initial_sparsity, self.final_sparsity, current, start, end, freq)

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float:
        w = Window.from_meta(meta)
        return self.step(w.current, w.start, w.end, w.freq)

    def __repr__(self) -> str:
        return f"AgpRate({self.initial_sparsity} -> {self.final_sparsity})"


AgpPruningRate = AgpRate
"""The original's name (``rate_scheduler_factory=AgpPruningRate``)."""


class BaiduRate:
    """The Baidu RNN threshold ramp over the policy's window (see :func:`baidu_threshold`)."""

    def __init__(self, q: float, ramp_epoch_offset: int, ramp_slope_mult: float) -> None:
        self.q = q
        self.ramp_epoch_offset = ramp_epoch_offset
        self.ramp_slope_mult = ramp_slope_mult

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float:
        w = Window.from_meta(meta)
        return baidu_threshold(self.q, self.ramp_epoch_offset, self.ramp_slope_mult, w.current, w.start, w.end, w.freq)


class RandomRangeRate:
    """A level drawn uniformly from ``sparsity_range`` at every call (one draw per parameter)."""

    def __init__(self, sparsity_range: tuple[float, float] | list[float], seed: int | None = None) -> None:
        if len(sparsity_range) != 2:
            raise ConfigError(f"sparsity_range must be [low, high], got {sparsity_range!r}.")
        lo, hi = (check_fraction(v, "sparsity_range") for v in sparsity_range)
        if hi < lo:
            raise ConfigError(f"sparsity_range must be [low, high] with low <= high, got {sparsity_range!r}.")
        self.sparsity_range = (lo, hi)
        # Without a seed, draw from the global RNG so that ``torch.manual_seed`` makes runs reproducible.
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, param_name: str, meta: Mapping[str, Any] | None) -> float:
        return random_level(*self.sparsity_range, generator=self.generator)
