"""The regularizer contract and its registry.

A regularizer adds a penalty to the training loss (:meth:`Regularizer.loss`) and may turn that
penalty into a hard decision (:meth:`Regularizer.threshold`): a one-shot mask that zeroes the
structures the penalty has already pushed below a threshold. ``RegularizationPolicy`` calls both
for every parameter of the model, with the names ``named_parameters()`` gives (which may carry the
``module.`` element of DataParallel), so both methods accept either spelling.

The constructor keeps the original Distiller's signature ``(name, model, reg_regims,
threshold_criteria=None)`` so schedules written for it load unchanged, but unlike the original it
checks ``reg_regims`` against the model when the regularizer is built: a parameter name that
matches nothing would otherwise regularize nothing, silently, for a whole training run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import Registry, did_you_mean

__all__ = ["EPSILON", "REGULARIZERS", "Regularizer", "register_regularizer", "parse_strength"]

EPSILON = 1e-8
"""The original's small constant (kept for code that imports it)."""

REGULARIZERS: Registry[type[Regularizer]] = Registry("regularizer")
"""YAML ``class:`` name -> regularizer class."""

R = TypeVar("R", bound=type)


def register_regularizer(name: str | None = None, *, replace: bool = False) -> Callable[[R], R]:
    """Class decorator: make a regularizer available to schedules under ``name`` (default: class name)."""

    def add(cls: R) -> R:
        REGULARIZERS.register(name or cls.__name__, cls, replace=replace)
        return cls

    return add


def parse_strength(value: Any, where: str) -> float:
    """A regularization strength as a finite, non-negative float.

    Strings that spell a number are accepted because PyYAML reads ``1e-4`` (no dot) as a string.

    Raises:
        ConfigError: ``value`` is not a number, or is negative, NaN or infinite.
    """
    if isinstance(value, bool):
        raise ConfigError(f"{where}: the strength must be a number, got {value!r}. Write e.g. 0.0005.")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(f"{where}: the strength must be a number, got {value!r}. Write e.g. 0.0005.") from None
    if not isinstance(value, (int, float)):
        raise ConfigError(
            f"{where}: the strength must be a number, got {value!r} ({type(value).__name__}). Write e.g. 0.0005."
        )
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: the strength must be a finite number >= 0, got {value!r}.")
    return value


class Regularizer:
    """Base class: parses ``reg_regims`` against the model and dispatches per parameter.

    Subclasses implement :meth:`parse_regime` (validate one entry of ``reg_regims``),
    :meth:`param_loss` (the penalty of one parameter) and, when they can threshold,
    :meth:`param_threshold_mask`.

    Args:
        name: the instance name (the key under ``regularizers:`` in a schedule); used in messages.
        model: the model whose parameters are regularized.
        reg_regims: ``{parameter name: regime}``; the regime's form depends on the subclass.
            Names may carry ``module.`` elements; they are stored in canonical form.
        threshold_criteria: ``None`` disables :meth:`threshold`; other values are subclass-specific.

    Raises:
        ConfigError: ``reg_regims`` is empty or not a mapping, names a parameter the model does not
            have (with the closest names), names one twice, or has a malformed regime.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        reg_regims: Mapping[str, Any] | None,
        threshold_criteria: str | None = None,
    ) -> None:
        self.name = name
        self.model = model
        self.threshold_criteria = threshold_criteria
        self.reg_regims: dict[str, Any] = self._parse_regims(reg_regims)

    # --- what subclasses provide ----------------------------------------------------------------

    def parse_regime(self, param_name: str, value: Any, param: torch.Tensor) -> Any:
        """Validate and normalize the regime of one parameter (default: a strength)."""
        return parse_strength(value, self._where(param_name))

    def param_loss(self, param: torch.Tensor, regime: Any) -> torch.Tensor:
        """The penalty of one parameter under its (parsed) regime."""
        raise NotImplementedError

    def param_threshold_mask(self, param: torch.Tensor, regime: Any) -> torch.Tensor | None:
        """The one-shot mask of one parameter, or ``None`` to leave its mask alone."""
        return None

    # --- the contract the policy calls ----------------------------------------------------------

    @property
    def loss_component_name(self) -> str:
        """The name the loss is reported under (the original's ``<ClassName>_loss``)."""
        return f"{type(self).__name__}_loss"

    def regime(self, param_name: str) -> Any | None:
        """The parsed regime of ``param_name`` (either spelling), or ``None`` if it is not regularized."""
        regime = self.reg_regims.get(param_name)
        if regime is None and "module" in param_name:
            regime = self.reg_regims.get(normalize_module_name(param_name))
        return regime

    def loss(
        self,
        param: torch.Tensor,
        param_name: str,
        regularizer_loss: torch.Tensor | float,
        zeros_mask_dict: Any = None,
    ) -> torch.Tensor | float:
        """``regularizer_loss`` plus this parameter's penalty (unchanged if it is not regularized).

        The sum is out of place, so ``regularizer_loss`` may be a leaf tensor or a plain float.
        """
        regime = self.regime(param_name)
        if regime is None:
            return regularizer_loss
        return regularizer_loss + self.param_loss(param, regime)

    def threshold(self, param: torch.Tensor, param_name: str, zeros_mask_dict: Any) -> None:
        """Set a one-shot regularization mask for ``param`` in ``zeros_mask_dict``.

        Does nothing without ``threshold_criteria`` or for a parameter that is not regularized. The
        mask replaces the parameter's mask for one application (``is_regularization_mask``), after
        which the masker drops it; ``RegularizationPolicy(keep_mask=True)`` makes it permanent.
        """
        if self.threshold_criteria is None:
            return
        regime = self.regime(param_name)
        if regime is None:
            return
        with torch.no_grad():
            mask = self.param_threshold_mask(param.detach(), regime)
        if mask is None:
            return
        masker = zeros_mask_dict[param_name]
        masker.mask = mask
        masker.is_regularization_mask = True

    # --- helpers --------------------------------------------------------------------------------

    def _where(self, param_name: str | None = None) -> str:
        base = f"{type(self).__name__} {self.name!r}"
        return f"{base}: reg_regims[{param_name!r}]" if param_name is not None else base

    def _parse_regims(self, reg_regims: Mapping[str, Any] | None) -> dict[str, Any]:
        if not isinstance(reg_regims, Mapping) or not reg_regims:
            raise ConfigError(
                f"{self._where()}: reg_regims must map parameter names to regimes, got {reg_regims!r}. "
                "Example: reg_regims: {layer1.0.conv1.weight: 0.0005}."
            )
        params = {normalize_module_name(n): p for n, p in self.model.named_parameters()}
        parsed: dict[str, Any] = {}
        for raw_name, value in reg_regims.items():
            if not isinstance(raw_name, str):
                raise ConfigError(f"{self._where()}: parameter names must be strings, got {raw_name!r}.")
            key = normalize_module_name(raw_name)
            if key not in params:
                raise ConfigError(
                    f"{self._where()}: reg_regims names parameter {raw_name!r}, which the model does not have."
                    f"{did_you_mean(key, list(params))} Use the names of model.named_parameters()."
                )
            if key in parsed:
                raise ConfigError(f"{self._where()}: parameter {key!r} is listed twice in reg_regims.")
            parsed[key] = self.parse_regime(key, value, params[key])
        return parsed

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, params={len(self.reg_regims)}, "
            f"threshold_criteria={self.threshold_criteria!r})"
        )
