"""The base ``Quantizer``: per-module bits and settings from regex overrides, module replacement.

A quantizer decides, for every module of a model, how many bits its activations, weights and bias
get (``QBits``) and which extra settings apply, then replaces modules by quantized versions through
``replacement_factory`` (module type → function). Overrides are an ordered mapping of module-name
regular expressions (anchored at both ends) to settings; the **first** matching pattern wins, and a
``null`` number of bits keeps that part in float. Post-training and quantization-aware quantizers
derive from this class.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.naming import normalize_module_name

__all__ = ["QBits", "Quantizer", "ReplacementFn"]

#: ``fn(module, name, qbits_map, **settings) -> replacement module (or the module itself)``
ReplacementFn = Callable[..., nn.Module]

_BITS_KEYS = ("bits_activations", "bits_weights", "bits_bias")
_PARAM_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)


class QBits(NamedTuple):
    """Bits of a module's activations, weights and bias (``None``: keep float)."""

    acts: int | None
    wts: int | None
    bias: int | None


def _check_bits(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
        raise ConfigError(f"{where}: number of bits must be an integer in 1..32 or null (keep float), got {value!r}")
    return value


class Quantizer:
    """Per-module bit widths from defaults and overrides; replaces modules on ``prepare_model``.

    Args:
        model: the model to quantize.
        optimizer: kept for quantization-aware training (new parameters are added to it).
        bits_activations, bits_weights, bits_bias: defaults (``None``: float).
        overrides: ``{regex: {bits_activations: ..., <replacement settings>...}}``; first match wins.
        train_with_fp_copy: keep float weights for training (QAT).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        bits_activations: int | None = None,
        bits_weights: int | None = None,
        bits_bias: int | None = None,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        train_with_fp_copy: bool = False,
    ) -> None:
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(
                f"overrides must be a mapping of module-name patterns to settings, got {type(overrides).__name__}"
            )
        self.model = model
        self.optimizer = optimizer
        self.default_qbits = QBits(
            _check_bits(bits_activations, "bits_activations"),
            _check_bits(bits_weights, "bits_weights"),
            _check_bits(bits_bias, "bits_bias"),
        )
        self.overrides: OrderedDict[str, dict[str, Any]] = OrderedDict(
            (str(pattern), dict(settings or {})) for pattern, settings in (overrides or {}).items()
        )
        self._patterns = []
        for pattern in self.overrides:
            try:
                self._patterns.append((pattern, re.compile(pattern)))
            except re.error as exc:
                raise ConfigError(f"overrides: {pattern!r} is not a valid regular expression ({exc})") from exc
        for pattern, settings in self.overrides.items():
            for key in _BITS_KEYS:
                if key in settings:
                    _check_bits(settings[key], f"overrides.{pattern}.{key}")
        self.train_with_fp_copy = train_with_fp_copy
        self.replacement_factory: dict[type, ReplacementFn | None] = OrderedDict()
        self.default_replacement_fn: ReplacementFn | None = None
        self.replacement_blacklist: list[type] = []
        self.prepared = False
        self.modules_replaced: OrderedDict[str, nn.Module] = OrderedDict()
        self._replaced_by_id: dict[int, tuple[str, nn.Module]] = {}

    # -- per-module settings -----------------------------------------------------------------
    def matching_pattern(self, name: str) -> str | None:
        """The first override pattern that matches all of ``name`` (without a ``module.`` prefix)."""
        name = normalize_module_name(name)
        for pattern, regex in self._patterns:
            if regex.fullmatch(name):
                return pattern
        return None

    def module_overrides(self, name: str) -> dict[str, Any]:
        pattern = self.matching_pattern(name)
        return dict(self.overrides[pattern]) if pattern is not None else {}

    def module_qbits(self, name: str, module: nn.Module) -> QBits:
        over = self.module_overrides(name)
        acts = over.get("bits_activations", self.default_qbits.acts)
        wts = over.get("bits_weights", self.default_qbits.wts)
        bias = over.get("bits_bias", self.default_qbits.bias)
        if not isinstance(module, _PARAM_TYPES):
            wts = bias = None
        return QBits(acts, wts, bias)

    @property
    def module_qbits_map(self) -> dict[str, QBits]:
        return {normalize_module_name(n): self.module_qbits(n, m) for n, m in self.model.named_modules() if n}

    def unused_overrides(self) -> list[str]:
        """Override patterns that match no module (usually a typo)."""
        names = [normalize_module_name(n) for n, _ in self.model.named_modules() if n]
        return [p for p, regex in self._patterns if not any(regex.fullmatch(n) for n in names)]

    # -- preparation -------------------------------------------------------------------------
    def prepare_model(self, dummy_input: torch.Tensor | None = None) -> nn.Module:
        """Replace modules by their quantized versions; returns the prepared model."""
        if self.prepared:
            raise QuantizationError("prepare_model() was already called for this quantizer")
        self._pre_prepare_model(dummy_input)
        self._replace_modules(self.model, prefix="")
        self._post_prepare_model()
        self.prepared = True
        return self.model

    def _pre_prepare_model(self, dummy_input: torch.Tensor | None) -> None:
        """Hook: transformations before module replacement."""

    def _post_prepare_model(self) -> None:
        """Hook: after module replacement."""

    def _replacement_fn(self, module: nn.Module) -> ReplacementFn | None:
        for cls in type(module).__mro__:
            if cls in self.replacement_factory:
                return self.replacement_factory[cls]
        return self.default_replacement_fn

    def _replace_modules(self, container: nn.Module, prefix: str) -> None:
        for child_name, child in list(container._modules.items()):
            if child is None:
                continue
            full = f"{prefix}.{child_name}" if prefix else child_name
            name = normalize_module_name(full)
            seen = self._replaced_by_id.get(id(child))
            if seen is not None:  # one module instance reachable under two names: replace it once
                first_name, replacement = seen
                warnings.warn(
                    f"module {name} is the same instance as {first_name}; both use one quantized module",
                    stacklevel=3,
                )
                if replacement is not child:
                    setattr(container, child_name, replacement)
                continue
            if isinstance(child, tuple(self.replacement_blacklist)):
                self._replaced_by_id[id(child)] = (name, child)
                continue
            fn = self._replacement_fn(child)
            is_leaf = not list(child.children())
            if fn is None or (not is_leaf and type(child) not in self.replacement_factory):
                self._replace_modules(child, full)
                continue
            settings = self._replacement_settings(name, fn)
            new = fn(child, name, self.module_qbits_map_for(name, child), **settings)
            self._replaced_by_id[id(child)] = (name, new)
            if new is not child:
                setattr(container, child_name, new)
                self.modules_replaced[name] = new

    def module_qbits_map_for(self, name: str, module: nn.Module) -> dict[str, QBits]:
        return {name: self.module_qbits(name, module)}

    def _replacement_settings(self, name: str, fn: ReplacementFn) -> dict[str, Any]:
        """The override settings of ``name`` that ``fn`` accepts (others are an error)."""
        over = {k: v for k, v in self.module_overrides(name).items() if k not in _BITS_KEYS}
        params = inspect.signature(fn).parameters
        if any(p.kind == p.VAR_KEYWORD for p in params.values()):
            return over
        unknown = sorted(set(over) - set(params))
        if unknown:
            pattern = self.matching_pattern(name)
            raise ConfigError(
                f"overrides.{pattern}: {', '.join(unknown)} is not a setting of {name}; "
                f"valid settings: {', '.join(sorted(set(params) - {'module', 'name', 'qbits_map'}))}"
            )
        return over
