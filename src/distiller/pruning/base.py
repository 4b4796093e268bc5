"""The pruner protocol, the ``PRUNERS`` registry, and what every pruner shares.

A pruner is any object with a ``name`` and the original Distiller's
``set_param_mask(param, param_name, zeros_mask_dict, meta)``: it is called for every parameter of
the model, ignores the ones it was not configured for, and writes
``zeros_mask_dict[param_name].mask``. Nothing else -- applying masks is the scheduler's job.

:class:`Pruner` is the base class the built-in pruners share. It composes the two halves of every
pruning algorithm:

* a *rate* (:mod:`distiller.pruning.rates`): ``(param_name, meta) -> target`` -- a sparsity level,
  a threshold, or a sensitivity; ``None`` skips the parameter;
* :meth:`Pruner.make_mask`: ``(param, target) -> mask``, usually one call of a pure mask function
  of :mod:`distiller.sparsity.criteria` at some granularity.

and does the bookkeeping once: canonical parameter names (``module.`` elements removed), the
``weights`` list (a list or a single string), and per-round caches (:class:`RoundCache`) for
pruners whose decision spans several tensors (``group_dependency: Leader``, global thresholds).

Users register their own pruners with :func:`register_pruner` so YAML ``class:`` names find them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import Registry, did_you_mean

__all__ = [
    "PRUNERS",
    "Pruner",
    "RoundCache",
    "as_weight_list",
    "find_parameter",
    "register_pruner",
]

logger = logging.getLogger(__name__)

PRUNERS: Registry[type] = Registry("pruner")
"""YAML ``class:`` name -> pruner class. The only place a schedule can find a pruner."""

T = TypeVar("T")


def register_pruner(name: str | type | None = None, *, replace: bool = False) -> Any:
    """Register a pruner class in :data:`PRUNERS` under ``name`` (default: the class name).

    Use as ``@register_pruner`` or ``@register_pruner("MyPruner")``. Registering a taken name
    raises :class:`ConfigError` unless ``replace``, so a plugin cannot silently shadow a built-in.
    """
    if isinstance(name, type):
        return PRUNERS.register(None, name, replace=replace)

    def decorator(cls: T) -> T:
        return PRUNERS.register(name, cls, replace=replace)

    return decorator


def as_weight_list(weights: str | Iterable[str] | None, what: str = "weights") -> list[str]:
    """``weights`` as a list of canonical parameter names.

    The original's YAML gives ``weights`` as a list, but a single name is a common slip; both are
    accepted. Names lose their ``module.`` elements (DataParallel spelling).

    Raises:
        ConfigError: empty, or not strings.
    """
    if isinstance(weights, str):
        weights = [weights]
    if weights is None:
        raise ConfigError(f"{what} is required: the list of parameter names to prune.")
    names = list(weights)
    if not names:
        raise ConfigError(f"{what} is empty: give at least one parameter name to prune.")
    bad = [w for w in names if not isinstance(w, str)]
    if bad:
        raise ConfigError(f"{what} must be parameter names (strings); got {bad[0]!r}.")
    out: list[str] = []
    for w in names:
        key = normalize_module_name(w)
        if key not in out:
            out.append(key)
    return out


def find_parameter(model: nn.Module | None, name: str) -> torch.Tensor:
    """The parameter of ``model`` whose canonical name is ``name``.

    Raises:
        ConfigError: no model (a pruner needing other tensors than the one it is called with was
            run without ``meta['model']``), or no such parameter.
    """
    if model is None:
        raise ConfigError(
            f"This pruner needs the model to read {name!r}; pass it as meta['model'] (the scheduler and "
            "distiller.pruning.prune do)."
        )
    params = {normalize_module_name(n): p for n, p in model.named_parameters()}
    if name not in params:
        raise ConfigError(f"The model has no parameter {name!r}.{did_you_mean(name, list(params))}")
    return params[name]


class RoundCache:
    """A value computed once per *pruning round* and shared by the tensors of that round.

    A round is one pass of ``set_param_mask`` over the model's parameters (one scheduler call).
    Pruners cannot see where a round begins -- the scheduler just calls them parameter by
    parameter, in model order -- so a round is taken to end when a parameter name comes back.
    The original used "the target sparsity changed" as the signal, which kept a stale leader map
    forever under a constant target.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._value: Any = None
        self._valid = False

    def visit(self, name: str) -> None:
        """Note that ``name`` is being pruned; a repeated name starts a new round."""
        if name in self._seen:
            self._seen.clear()
            self._valid = False
        self._seen.add(name)

    def get(self, compute: Callable[[], T]) -> T:
        """The round's value, computing it on first use in the round."""
        if not self._valid:
            self._value = compute()
            self._valid = True
        return self._value

    def clear(self) -> None:
        self._seen.clear()
        self._value = None
        self._valid = False


class Pruner:
    """Base class of the built-in pruners: bookkeeping around ``rate`` x :meth:`make_mask`.

    Subclasses set :attr:`rate` (see :mod:`distiller.pruning.rates`) and implement
    :meth:`make_mask`. A pruner with a ``weights`` list prunes exactly those parameters; one
    without (``weights=None``) prunes every parameter its rate gives a target for (the
    ``levels``/``thresholds``/``sensitivities`` dicts, with their ``'*'`` default).

    Args:
        name: the instance name (the YAML key under ``pruners:``).
        weights: the parameters to prune, or ``None`` (see above).
    """

    rate: Callable[[str, Mapping[str, Any] | None], float | None]

    def __init__(self, name: str, weights: str | Iterable[str] | None = None) -> None:
        self.name = name
        self.params_names: list[str] | None = None if weights is None else as_weight_list(weights)

    # -- the protocol ---------------------------------------------------------------------------

    def set_param_mask(
        self, param: torch.Tensor, param_name: str, zeros_mask_dict: Any, meta: Mapping[str, Any] | None
    ) -> None:
        """Compute and set the mask of ``param`` if this pruner is configured for it.

        Args:
            param: the parameter tensor.
            param_name: its name, canonical or with ``module.`` elements.
            zeros_mask_dict: the :class:`~distiller.sparsity.MaskSet` (or any mapping of maskers).
            meta: the policy metadata (``current_epoch``, ``starting_epoch``, ``ending_epoch``,
                ``frequency``, ``model``, ``optimizer``; step keys for step windows).
        """
        name = normalize_module_name(param_name)
        if not self.is_supported(name):
            return
        target = self.target(name, meta)
        if target is None:
            return
        masker = zeros_mask_dict[param_name]
        mask = self.make_mask(param, name, target, masker.mask, meta)
        if mask is not None:
            masker.mask = mask

    def is_supported(self, param_name: str) -> bool:
        """Whether this pruner was configured for ``param_name`` (canonical)."""
        return self.params_names is None or param_name in self.params_names

    def target(self, param_name: str, meta: Mapping[str, Any] | None) -> float | None:
        """The rate's target for ``param_name`` at this point of the schedule."""
        return self.rate(param_name, meta)

    def make_mask(
        self,
        param: torch.Tensor,
        param_name: str,
        target: float,
        current_mask: torch.Tensor | None,
        meta: Mapping[str, Any] | None,
    ) -> torch.Tensor | None:
        """The new mask of ``param`` for ``target``, or ``None`` to leave the current one."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (tensors and plain data only)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    # -- checks ---------------------------------------------------------------------------------

    def configured_names(self) -> list[str]:
        """The explicitly named parameters (``weights`` or the keys of a per-parameter dict)."""
        if self.params_names is not None:
            return list(self.params_names)
        values = getattr(self.rate, "values", None)
        return [k for k in values if k != "*"] if isinstance(values, Mapping) else []

    def validate(self, model: nn.Module) -> None:
        """Raise :class:`ConfigError` when a configured parameter name is not in ``model``.

        The original silently pruned nothing on a typo; a one-shot run or a schedule load calls
        this so the mistake shows at once, with the closest names.
        """
        params = {normalize_module_name(n) for n, _ in model.named_parameters()}
        for name in self.configured_names():
            if name not in params:
                raise ConfigError(
                    f"Pruner {self.name!r} ({type(self).__name__}) names parameter {name!r}, which the model does "
                    f"not have.{did_you_mean(name, sorted(params))}"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
