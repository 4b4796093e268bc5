"""Structured pruners that rank structures (filters, channels, ...) and prune the lowest ones.

:class:`RankedStructurePruner` is the original's ``_RankedStructureParameterPruner``: it owns a
granularity, a rate (``desired_sparsity``, an AGP schedule or a random range) and the ranking
options (``group_size``, ``rounding_fn``, ε-greedy ``noise``), and turns a per-structure
*keep map* into a mask. What differs between the algorithms is only the per-structure score:
an Lp norm here, an activation statistic, a gradient or a random draw in
:mod:`distiller.pruning.filter_ranked`. Those plug in by overriding :meth:`~RankedStructurePruner.scores`.

``group_dependency: Leader`` ranks the first tensor of ``weights`` once per round and reuses its
keep map for the others, so coupled layers (residual branches) lose the same filters.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.pruning.base import Pruner, RoundCache, find_parameter, register_pruner
from distiller.pruning.coupled import CoupledRanking
from distiller.pruning.rates import ConstantRate, RandomRangeRate, check_fraction
from distiller.sparsity.criteria import num_structs_to_prune, structure_level_binary_map
from distiller.sparsity.granularity import Granularity, granularity_from_name

__all__ = [
    "L1RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner",
    "LpRankedStructureParameterPruner",
    "RandomLevelStructureParameterPruner",
    "CannotRankYet",
    "RankedStructurePruner",
    "norm_spec",
    "resolve_rounding_fn",
]

logger = logging.getLogger(__name__)


class CannotRankYet(Exception):
    """Raised by :meth:`RankedStructurePruner.scores` when a tensor cannot be ranked now (no gradient
    yet, say); the tensor's mask is left as it is, as the original did."""


# The original's ranked pruners read ``Rows`` in the "transposed" sense of its sparsity metrics:
# for a PyTorch ``(out, in)`` weight they prune *columns* (input features), which is what lets a
# Linear layer follow pruned conv channels (reference §1.2; ``rank_and_prune_rows`` used
# ``rank_cols`` and a ``Cols`` mask). Kept for schedule compatibility; write ``Filters`` for dim-0 rows.
_RANKED_GROUP_ALIASES = {"Rows": "Cols"}

_ROUNDING = {"floor": math.floor, "ceil": math.ceil, "round": round}


def resolve_rounding_fn(rounding_fn: Callable[[float], float] | str) -> Callable[[float], float]:
    """A rounding function, or its name (``floor``, ``ceil``, ``round``) as YAML can give it."""
    if callable(rounding_fn):
        return rounding_fn
    if isinstance(rounding_fn, str) and rounding_fn.lower() in _ROUNDING:
        return _ROUNDING[rounding_fn.lower()]
    raise ConfigError(f"rounding_fn must be one of {', '.join(_ROUNDING)} (or a function); got {rounding_fn!r}.")


def ranked_granularity(group_type: str | Granularity, kwargs: Mapping[str, Any] | None) -> Granularity:
    """The granularity a ranked pruner's ``group_type`` (and ``kwargs``) names."""
    if isinstance(group_type, str):
        group_type = _RANKED_GROUP_ALIASES.get(group_type, group_type)
    if group_type == "Element":
        raise ConfigError("Ranked structure pruners need a structure group_type; use a level pruner for 'Element'.")
    return granularity_from_name(group_type, **dict(kwargs or {}))


class RankedStructurePruner(Pruner):
    """Prune the lowest-ranked fraction of the structures of each listed tensor.

    Args:
        name: instance name.
        group_type: the structure (``Filters``/``3D``, ``Channels``, ``Rows``, ``Blocks``, ``Kernels``/
            ``2D``, ``Cols``, ``4D``, ``'2:4'``...). ``Rows`` means columns of a 2-D weight, as in
            the original's ranked pruners.
        desired_sparsity: fraction of structures to prune.
        weights: the parameters to prune.
        group_dependency: ``"Leader"`` to prune every listed tensor like the first one; ``"Coupled"``
            to rank each listed tensor's coupled channel group jointly (every filter that adds into a
            residual stage, with the channels that read it), so that the result thins exactly.
        group_size: adjacent structures ranked and pruned together (e.g. channels in multiples of 8).
        rounding_fn: how the structure count is rounded (``floor``, ``ceil``, ``round``).
        noise: ε of the ε-greedy ranking noise (0 = rank by score only).
        kwargs: granularity options, e.g. ``{block_shape: [1, 4, 1, 1]}`` for ``Blocks``.
    """

    #: Group types this pruner accepts (``None`` = any).
    supported_groups: tuple[str, ...] | None = None

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
        noise: float = 0.0,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, weights)
        if self.supported_groups is not None and group_type not in self.supported_groups:
            raise ConfigError(
                f"{type(self).__name__} {name!r} supports group_type {' or '.join(self.supported_groups)}; "
                f"got {group_type!r}."
            )
        if group_dependency not in (None, "Leader", "Coupled"):
            raise ConfigError(f"group_dependency must be 'Leader', 'Coupled' or absent; got {group_dependency!r}.")
        if int(group_size) < 1:
            raise ConfigError(f"group_size must be a positive integer; got {group_size!r}.")
        self.group_type = group_type
        self.granularity = ranked_granularity(group_type, kwargs)
        self.group_dependency = group_dependency
        self.group_size = int(group_size)
        self.rounding_fn = resolve_rounding_fn(rounding_fn)
        self.noise = check_fraction(noise, "noise")
        self.desired_sparsity = desired_sparsity
        self.generator: torch.Generator | None = None  # None: the global RNG (seeded by torch.manual_seed)
        self._leader = RoundCache()
        self._coupled = CoupledRanking() if group_dependency == "Coupled" else None
        if self._coupled is not None and str(self.granularity) not in ("Filters", "Channels"):
            raise ConfigError(f"group_dependency: Coupled ranks filters or channels; got group_type {group_type!r}.")

    @property
    def desired_sparsity(self) -> float:
        """The constant fraction to prune; setting it (as the original's users did) replaces the rate."""
        return self._desired_sparsity

    @desired_sparsity.setter
    def desired_sparsity(self, value: float) -> None:
        self._desired_sparsity = check_fraction(value, "desired_sparsity")
        self.rate = ConstantRate(self._desired_sparsity)

    # -- what subclasses change -----------------------------------------------------------------

    def scores(self, param: torch.Tensor, param_name: str, meta: Mapping[str, Any] | None) -> torch.Tensor | None:
        """One importance value per structure group (higher = keep); ``None`` ranks by the norm.

        Raises:
            CannotRankYet: leave this tensor's mask unchanged this time.
        """
        return None

    #: The norm used when :meth:`scores` returns ``None`` (1, 2 or ``"max"``).
    p: int | float | str = 1

    def mask_from_keep_map(self, keep: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        """Expand a per-structure keep map to the full mask."""
        return self.granularity.expand(keep.to(dtype=param.dtype, device=param.device), param.shape)

    # -- the algorithm --------------------------------------------------------------------------

    def fraction_to_prune(self, param_name: str, meta: Mapping[str, Any] | None = None) -> float:
        """The fraction of structures to prune now (the original's method name)."""
        return self.rate(param_name, meta)

    def target(self, param_name, meta):
        return self.fraction_to_prune(param_name, meta)

    def leader(self) -> str:
        """The tensor whose ranking the others follow under ``group_dependency: Leader``."""
        assert self.params_names is not None
        return self.params_names[0]

    def keep_map(
        self, param: torch.Tensor, param_name: str, fraction: float, meta: Mapping[str, Any] | None
    ) -> torch.Tensor | None:
        """0/1 per structure, or ``None`` when ``fraction`` prunes nothing (too few structures)."""
        n_structs = self.granularity.num_structures(param.shape)
        if self.group_size > 1 and n_structs % self.group_size:
            raise ConfigError(
                f"{self.name!r}: group_size {self.group_size} does not divide the {n_structs} {self.granularity} "
                f"structures of {param_name!r}."
            )
        if fraction <= 0 or num_structs_to_prune(n_structs, self.group_size, fraction, self.rounding_fn) == 0:
            return None
        try:
            scores = self.scores(param, param_name, meta)
        except CannotRankYet as why:
            logger.info("%s: not pruning %s: %s", self.name, param_name, why)
            return None
        return structure_level_binary_map(
            param.detach(),
            fraction,
            self.granularity,
            p=self.p,
            noise=self.noise,
            rounding_fn=self.rounding_fn,
            generator=self.generator,
            group_len=self.group_size,
            scores=scores,
        )

    def set_param_mask(self, param, param_name, zeros_mask_dict, meta):
        """With ``group_dependency: Coupled``, the other filters (channels) of a listed tensor's group
        are pruned too, at the listed tensor's rate: a group can only be thinned as a whole."""
        name = normalize_module_name(param_name)
        model = (meta or {}).get("model")
        if self._coupled is None or self.is_supported(name) or model is None or not param.dim() > 1:
            return super().set_param_mask(param, param_name, zeros_mask_dict, meta)
        dim = 0 if str(self.granularity) == "Filters" else 1
        partner = self._coupled.partner(name, self.params_names or [], dim, model, meta.get("dataset"))
        target = None if partner is None else self.target(partner, meta)
        if target is None:
            return None
        mask = self.make_mask(param, name, target, zeros_mask_dict[param_name].mask, meta)
        if mask is not None:
            zeros_mask_dict[param_name].mask = mask
        return None

    def make_mask(self, param, param_name, target, current_mask, meta):
        if self._coupled is not None:
            if target <= 0:
                return None
            dim = 0 if str(self.granularity) == "Filters" else 1
            meta = meta or {}
            return self._coupled.mask(
                param,
                param_name,
                target,
                dim,
                model=meta.get("model"),
                dataset=meta.get("dataset"),
                p=2 if self.p == 2 else 1,
            )
        if self.group_dependency == "Leader":
            keep = self._leader_keep_map(param, param_name, meta)
            if keep is not None and keep.numel() != self.granularity.num_structures(param.shape):
                raise ConfigError(
                    f"{self.name!r}: {param_name!r} has {self.granularity.num_structures(param.shape)} "
                    f"{self.granularity} structures but its leader {self.leader()!r} has {keep.numel()}; "
                    "group_dependency: Leader needs tensors with the same number of structures."
                )
        else:
            keep = self.keep_map(param, param_name, target, meta)
        return None if keep is None else self.mask_from_keep_map(keep, param)

    def _leader_keep_map(
        self, param: torch.Tensor, param_name: str, meta: Mapping[str, Any] | None
    ) -> torch.Tensor | None:
        self._leader.visit(param_name)
        leader = self.leader()

        def rank_leader() -> torch.Tensor | None:
            tensor = param if param_name == leader else find_parameter((meta or {}).get("model"), leader)
            return self.keep_map(tensor, leader, self.fraction_to_prune(leader, meta), meta)

        return self._leader.get(rank_leader)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.granularity}, rate={self.rate})"


def norm_spec(magnitude_fn: Any) -> int | float | str:
    """The norm a ``magnitude_fn`` names: ``'L1'``, ``'L2'``, ``'Max'``, 1, 2, or a named norm object."""
    if magnitude_fn is None:
        return 1
    p = getattr(magnitude_fn, "p", magnitude_fn)
    if isinstance(p, str):
        key = p.lower()
        table = {"l1": 1, "1": 1, "l2": 2, "2": 2, "max": "max", "inf": "max", "linf": "max"}
        if key not in table:
            raise ConfigError(f"magnitude_fn must be L1, L2 or Max; got {magnitude_fn!r}.")
        return table[key]
    if isinstance(p, (int, float)):
        return "max" if math.isinf(p) else p
    raise ConfigError(
        f"magnitude_fn must be L1, L2, Max or distiller.sparsity.norms.l1_norm/...; got {magnitude_fn!r}."
    )


@register_pruner
class LpRankedStructureParameterPruner(RankedStructurePruner):
    """Rank structures by their length-normalized Lp norm (mean magnitude for L1).

    Args:
        magnitude_fn: the norm (``'L1'``, ``'L2'``, ``'Max'``, or
            :data:`distiller.sparsity.norms.l1_norm` and friends). See
            :class:`RankedStructurePruner` for the others.
    """

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        magnitude_fn: Any = None,
        noise: float = 0.0,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
    ) -> None:
        super().__init__(
            name, group_type, desired_sparsity, weights, group_dependency, group_size, rounding_fn, noise, kwargs
        )
        self.p = norm_spec(magnitude_fn)


@register_pruner
class L1RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """Rank structures by mean absolute value (Li et al. 2016, "Pruning Filters for Efficient ConvNets")."""

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        noise: float = 0.0,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
    ) -> None:
        super().__init__(
            name, group_type, desired_sparsity, weights, group_dependency, kwargs, 1, noise, group_size, rounding_fn
        )


@register_pruner
class L2RankedStructureParameterPruner(LpRankedStructureParameterPruner):
    """Rank structures by length-normalized L2 norm."""

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        noise: float = 0.0,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
    ) -> None:
        super().__init__(
            name, group_type, desired_sparsity, weights, group_dependency, kwargs, 2, noise, group_size, rounding_fn
        )


@register_pruner
class RandomLevelStructureParameterPruner(L1RankedStructureParameterPruner):
    """L1 ranking at a level drawn uniformly from ``sparsity_range`` at every call.

    Like DropFilter, but the *level* is random and the choice of structures is by magnitude.
    """

    def __init__(
        self,
        name: str,
        group_type: str,
        sparsity_range: tuple[float, float] | list[float],
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name, group_type, 0.0, weights, group_dependency, kwargs)
        self.rate = RandomRangeRate(sparsity_range)
        self.sparsity_range = self.rate.sparsity_range
