"""The base ``Quantizer``: per-module bits and settings from regex overrides, module replacement,
and the mechanics of quantization-aware training.

A quantizer decides, for every module of a model, how many bits its activations, weights and bias
get (``QBits``) and which extra settings apply, then replaces modules by quantized versions through
``replacement_factory`` (module type → function). Overrides are an ordered mapping of module-name
regular expressions (anchored at both ends) to settings; the **first** matching pattern wins, and a
``null`` number of bits keeps that part in float. Post-training and quantization-aware quantizers
derive from this class.

Quantization-aware training (QAT) adds, on top of module replacement:

* ``param_quantization_fn(param_fp, param_meta) -> tensor``: how a parameter is quantized; every
  parameter with bits (weights: ``bits_weights``, ``bias``: ``bits_bias``) of a quantizable layer is
  recorded in :attr:`Quantizer.params_to_quantize` as a :class:`ParamToQuant`;
* ``train_with_fp_copy``: the float parameter stays a ``Parameter`` named ``float_<name>`` (the same
  object, at the same position in ``named_parameters()``, so an optimizer built on the float model
  keeps training it), and ``<name>`` becomes a non-persistent buffer holding the quantized value.
  A forward pre-hook recomputes it from the float copy at every forward pass, so the gradient
  reaches the float copy through the quantizer's straight-through estimator and no graph is ever
  stale; after the forward pass the buffer is detached again, so the model can be deep-copied,
  exported and summarized like any other;
* learned quantization parameters (PACT's clipping value α): the parameters a preparation adds are
  put in new optimizer parameter groups (:meth:`Quantizer._get_new_optimizer_params_groups`, e.g.
  with their own weight decay), added to ``optimizer`` when the model is prepared;
* ``prepare_model()`` works in place: the model object, its parameters, the optimizer and the
  pruning masks stay valid. A module instance reachable under two names is handled once.

Checkpoints. The quantized buffers are not persistent, so a training checkpoint holds the float
copy only (``float_weight``) and never both (Distiller issue #486: the original's QAT checkpoints
were twice the size). For deployment, :func:`strip_fp_copy` turns the prepared model into a plain
one whose ``weight`` parameters hold the quantized values (and removes the float copies and
hooks); :func:`deploy_state_dict` gives that state dict without changing the model. A deployed
state dict loads into a model prepared by the same quantizer and then stripped.
"""

from __future__ import annotations

import copy
import inspect
import re
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from distiller.errors import ConfigError, QuantizationError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = [
    "FP_COPY_PREFIX",
    "ParamQuantizationFn",
    "ParamToQuant",
    "QBits",
    "Quantizer",
    "ReplacementFn",
    "add_param_groups",
    "deploy_state_dict",
    "has_fp_copy",
    "strip_fp_copy",
]

#: ``fn(module, name, qbits_map, **settings) -> replacement module (or the module itself)``
ReplacementFn = Callable[..., nn.Module]

#: Prefix of the float copy of a quantized parameter (``weight`` -> ``float_weight``).
FP_COPY_PREFIX = "float_"

_BITS_KEYS = ("bits_activations", "bits_weights", "bits_bias")
_PARAM_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.Embedding)
_FN_ARGS = {"module", "name", "qbits_map"}


class QBits(NamedTuple):
    """Bits of a module's activations, weights and bias (``None``: keep float)."""

    acts: int | None
    wts: int | None
    bias: int | None


class ParamToQuant(NamedTuple):
    """One parameter a QAT quantizer quantizes (the original's ``_ParamToQuant``).

    ``fp_attr_name`` is where the float value lives (``float_weight`` with ``train_with_fp_copy``,
    else ``weight`` itself), ``q_attr_name`` where the quantized value goes (``weight``).
    """

    module: nn.Module
    module_name: str
    fp_attr_name: str
    q_attr_name: str
    num_bits: int


#: ``fn(param_fp, param_meta) -> quantized tensor`` (differentiable w.r.t. ``param_fp``, usually via an STE)
ParamQuantizationFn = Callable[[torch.Tensor, ParamToQuant], torch.Tensor]


def _check_bits(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 32:
        raise ConfigError(f"{where}: number of bits must be an integer in 1..32 or null (keep float), got {value!r}")
    return value


# --- float shadow copies (train_with_fp_copy) -------------------------------------------------------


class _FpCopyEntry(NamedTuple):
    module_name: str
    fp_attr_name: str
    q_attr_name: str
    num_bits: int


class _QuantizeParamsHook:
    """Forward pre-hook: recompute a module's quantized parameters from their float copies.

    Holds no reference to the module (the hook receives it), so a deep-copied model quantizes its
    own parameters; the quantization function is shared, not copied.
    """

    def __init__(self, fn: ParamQuantizationFn, entries: list[_FpCopyEntry]) -> None:
        self.fn = fn
        self.entries = entries

    def quantize(self, module: nn.Module) -> dict[str, torch.Tensor]:
        out = {}
        for e in self.entries:
            meta = ParamToQuant(module, e.module_name, e.fp_attr_name, e.q_attr_name, e.num_bits)
            out[e.q_attr_name] = self.fn(module._parameters[e.fp_attr_name], meta)
        return out

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        module._buffers.update(self.quantize(module))

    def __deepcopy__(self, memo: dict[int, Any]) -> _QuantizeParamsHook:
        return _QuantizeParamsHook(self.fn, list(self.entries))


class _DetachParamsHook:
    """Forward hook: after the forward pass the quantized buffers hold plain (detached) tensors."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        for name in self.names:
            value = module._buffers.get(name)
            if value is not None and value.requires_grad:
                module._buffers[name] = value.detach()

    def __deepcopy__(self, memo: dict[int, Any]) -> _DetachParamsHook:
        return _DetachParamsHook(list(self.names))


def _rename_parameter(module: nn.Module, old: str, new: str) -> None:
    """Rename a parameter in place, keeping its position (and object) in ``named_parameters()``."""
    items = list(module._parameters.items())
    module._parameters.clear()
    for key, value in items:
        module._parameters[new if key == old else key] = value


def _fp_copy_hooks(module: nn.Module) -> list[tuple[int, _QuantizeParamsHook]]:
    return [(k, h) for k, h in module._forward_pre_hooks.items() if isinstance(h, _QuantizeParamsHook)]


def has_fp_copy(model: nn.Module) -> bool:
    """Whether ``model`` has parameters trained through float copies (a prepared QAT model)."""
    return any(_fp_copy_hooks(m) for m in model.modules())


@torch.no_grad()
def strip_fp_copy(model: nn.Module) -> nn.Module:
    """Turn a QAT-prepared model into a deployable one, in place; returns ``model``.

    Every ``float_<name>`` parameter is replaced by a ``<name>`` parameter holding the quantized
    (de-quantized, i.e. on-grid float) value, at the same position, and the re-quantization hooks
    are removed. Quantized activation modules (PACT's clipping, fake-quantization wrappers) and the
    range-linear ``<name>_scale``/``<name>_zero_point`` buffers stay. The result's ``state_dict()``
    holds each weight once, so its checkpoint is the size of the float model's (Distiller #486).

    The float copies are gone afterwards: strip a copy (``copy.deepcopy(model)``) if training goes on,
    or save :func:`deploy_state_dict` instead.
    """
    for module in model.modules():
        hooks = _fp_copy_hooks(module)
        if not hooks:
            continue
        for key, hook in hooks:
            quantized = hook.quantize(module)
            for e in hook.entries:
                module._buffers.pop(e.q_attr_name, None)
                fp = module._parameters[e.fp_attr_name]
                value = quantized[e.q_attr_name].detach().clone()
                _rename_parameter(module, e.fp_attr_name, e.q_attr_name)
                module._parameters[e.q_attr_name] = nn.Parameter(value, requires_grad=fp.requires_grad)
            del module._forward_pre_hooks[key]
        for key, post in list(module._forward_hooks.items()):
            if isinstance(post, _DetachParamsHook):
                del module._forward_hooks[key]
    metadata = getattr(model, "quantizer_metadata", None)
    if isinstance(metadata, dict):
        metadata["fp_copy_stripped"] = True
    return model


@torch.no_grad()
def deploy_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """``model.state_dict()`` with every float copy replaced by the quantized value it trains.

    Keys are those of :func:`strip_fp_copy`'s result (``conv1.weight`` holds the quantized weight,
    no ``conv1.float_weight``); the model itself is not changed. For a model without float copies
    this is its ``state_dict()``.
    """
    state = model.state_dict()
    replace: dict[str, tuple[str, torch.Tensor]] = {}
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        for _, hook in _fp_copy_hooks(module):
            quantized = hook.quantize(module)
            for e in hook.entries:
                replace[prefix + e.fp_attr_name] = (prefix + e.q_attr_name, quantized[e.q_attr_name].detach().clone())
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        if key in replace:
            new_key, new_value = replace[key]
            out[new_key] = new_value
        else:
            out[key] = value
    return out


# --- the quantizer ---------------------------------------------------------------------------------


class Quantizer:
    """Per-module bit widths from defaults and overrides; replaces modules on ``prepare_model``.

    Args:
        model: the model to quantize.
        optimizer: for quantization-aware training: new learned parameters are added to it as
            new parameter groups when the model is prepared.
        bits_activations, bits_weights, bits_bias: defaults (``None``: float).
        overrides: ``{regex: {bits_activations: ..., <replacement settings>...}}``; first match wins.
        train_with_fp_copy: keep float weights (``float_<name>`` parameters) and train them through
            the quantized ones (QAT).

    Subclasses set ``replacement_factory``, ``default_replacement_fn``, ``replacement_blacklist``
    and, for QAT, ``param_quantization_fn``; hooks: ``_pre_prepare_model``, ``_post_prepare_model``,
    ``_get_new_optimizer_params_groups``.
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
        for pattern, settings in (overrides or {}).items():
            if settings is not None and not isinstance(settings, Mapping):
                raise ConfigError(
                    f"overrides.{pattern}: expected a mapping of settings (e.g. 'bits_weights: null'), got {settings!r}"
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
        self.param_quantization_fn: ParamQuantizationFn | None = None
        self.params_to_quantize: list[ParamToQuant] = []
        self.new_param_groups: list[dict[str, Any]] = []
        self.prepared = False
        self.modules_replaced: OrderedDict[str, nn.Module] = OrderedDict()
        self._replaced_by_id: dict[int, tuple[str, nn.Module]] = {}
        self._qbits_by_id: dict[int, tuple[str, QBits]] = {}
        self.quantizer_metadata: dict[str, Any] = {
            "type": type(self).__name__,
            "params": {
                "bits_activations": bits_activations,
                "bits_weights": bits_weights,
                "bits_bias": bits_bias,
                "overrides": copy.deepcopy(dict(self.overrides)),
            },
        }

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

    def _check_overrides(self, bits_check: Callable[[str, str, int | None], None] | None = None) -> None:
        """Reject override patterns that match no module and settings no replacement function takes.

        Call at the end of a subclass constructor, once its replacement functions are set: a
        schedule written for another model (or with a typo) then fails while it is validated,
        naming the pattern and the fix, instead of silently quantizing what it meant to keep float.
        ``bits_check(pattern, key, bits)`` may reject bit widths the subclass does not support.
        """
        fns = [*self.replacement_factory.values(), self.default_replacement_fn]
        accepted = set(_BITS_KEYS)
        for fn in fns:
            if fn is not None:
                accepted |= set(inspect.signature(fn).parameters) - _FN_ARGS
        names = [normalize_module_name(n) for n, _ in self.model.named_modules() if n]
        for pattern, settings in self.overrides.items():
            unknown = sorted(set(settings) - accepted)
            if unknown:
                key = unknown[0]
                raise ConfigError(
                    f"overrides.{pattern}.{key}: {type(self).__name__} has no per-module setting {key!r}."
                    f"{did_you_mean(key, sorted(accepted))} Fix: use one of {', '.join(sorted(accepted))}."
                )
            if bits_check is not None:
                for key in _BITS_KEYS:
                    if settings.get(key) is not None:
                        bits_check(pattern, key, settings[key])
        for pattern in self.unused_overrides():
            near = did_you_mean(pattern, names)
            raise ConfigError(
                f"overrides.{pattern}: the pattern matches no module of the model.{near} Patterns are "
                f"regular expressions matched against whole module names such as "
                f"{', '.join(names[:4])}. Fix: correct the pattern, or remove it."
            )

    # -- preparation -------------------------------------------------------------------------
    def prepare_model(self, dummy_input: torch.Tensor | None = None) -> nn.Module:
        """Replace modules by their quantized versions; returns the prepared model.

        For quantization-aware training (a ``param_quantization_fn``) the model is changed in
        place and returned: parameters with bits are recorded in :attr:`params_to_quantize`
        (with float copies when ``train_with_fp_copy``), the parameters the preparation added go
        to new optimizer groups, and every parameter is quantized once.

        Raises:
            QuantizationError: the quantizer already prepared its model.
        """
        if self.prepared:
            raise QuantizationError("prepare_model() was already called for this quantizer")
        if self.param_quantization_fn is not None and has_fp_copy(self.model):
            raise QuantizationError(
                "the model was already prepared for quantization-aware training (it has float_* parameters). "
                "Fix: prepare the float model, with one quantizer."
            )
        self._pre_prepare_model(dummy_input)
        before = {id(p) for p in self.model.parameters()}
        self._qbits_by_id = {}
        for name, module in self.model.named_modules():
            if name and id(module) not in self._qbits_by_id:
                self._qbits_by_id[id(module)] = (normalize_module_name(name), self.module_qbits(name, module))
        self._replace_modules(self.model, prefix="")
        if self.param_quantization_fn is not None:
            self._register_params_to_quantize()
        self._post_prepare_model()
        new_params = [p for p in self.model.parameters() if id(p) not in before]
        self._add_new_param_groups(new_params)
        self.prepared = True
        if self.param_quantization_fn is not None:
            self.quantize_params()
            self.model.quantizer_metadata = self.quantizer_metadata
        return self.model

    def _pre_prepare_model(self, dummy_input: torch.Tensor | None) -> None:
        """Hook: transformations before module replacement."""

    def _post_prepare_model(self) -> None:
        """Hook: after module replacement (and after the parameters to quantize are recorded)."""

    def _get_new_optimizer_params_groups(self) -> list[dict[str, Any]]:
        """Hook: optimizer parameter groups for learned quantization parameters.

        Each is a dict as for ``optimizer.add_param_group`` (``params`` plus any option, e.g.
        ``weight_decay``). New parameters that no group names are added as one more group with the
        optimizer's defaults.
        """
        return []

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
                f"valid settings: {', '.join(sorted(set(params) - _FN_ARGS))}"
            )
        return over

    # -- quantization-aware training ---------------------------------------------------------
    def _register_params_to_quantize(self) -> None:
        """Record every parameter with bits; with ``train_with_fp_copy`` set up its float copy."""
        for module in self.model.modules():  # each instance once, however many names it has
            info = self._qbits_by_id.get(id(module))
            if info is None:
                continue
            module_name, qbits = info
            entries = []
            for pname in list(module._parameters):
                if module._parameters[pname] is None:
                    continue
                bits = qbits.bias if pname == "bias" else qbits.wts
                if bits is None:
                    continue
                fp_name = pname
                if self.train_with_fp_copy:
                    fp_name = FP_COPY_PREFIX + pname
                    if fp_name in module._parameters or fp_name in module._buffers:
                        raise QuantizationError(
                            f"{module_name} already has a {fp_name!r}. Fix: prepare the float model."
                        )
                    _rename_parameter(module, pname, fp_name)
                    module.register_buffer(pname, module._parameters[fp_name].detach().clone(), persistent=False)
                    entries.append(_FpCopyEntry(module_name, fp_name, pname, bits))
                self.params_to_quantize.append(ParamToQuant(module, module_name, fp_name, pname, bits))
            if entries:
                module.register_forward_pre_hook(_QuantizeParamsHook(self._quantize_param, entries))
                module.register_forward_hook(_DetachParamsHook([e.q_attr_name for e in entries]), always_call=True)

    def _quantize_param(self, param_fp: torch.Tensor, param_meta: ParamToQuant) -> torch.Tensor:
        fn = self.param_quantization_fn
        if fn is None:
            raise QuantizationError(f"{type(self).__name__} has no param_quantization_fn")
        return fn(param_fp, param_meta)

    @torch.no_grad()
    def quantize_params(self) -> None:
        """Quantize every recorded parameter now.

        With float copies the quantized buffers are refreshed (the forward pass recomputes them
        anyway); without, the parameters are overwritten by their quantized values.
        """
        for ptq in self.params_to_quantize:
            fp = getattr(ptq.module, ptq.fp_attr_name)
            q = self._quantize_param(fp, ptq)
            if self.train_with_fp_copy:
                ptq.module._buffers[ptq.q_attr_name] = q.detach()
            else:
                fp.copy_(q)

    def _add_new_param_groups(self, new_params: Iterable[nn.Parameter]) -> None:
        groups = [dict(g) for g in self._get_new_optimizer_params_groups()]
        for g in groups:
            g["params"] = list(g["params"]) if not isinstance(g["params"], torch.Tensor) else [g["params"]]
        named = {id(p) for g in groups for p in g["params"]}
        leftover = [p for p in new_params if id(p) not in named and p.requires_grad]
        if leftover:
            groups.append({"params": leftover})
        groups = [g for g in groups if g["params"]]
        self.new_param_groups = groups
        if not groups:
            return
        if self.optimizer is None:
            warnings.warn(
                f"{type(self).__name__} added learned parameters ({sum(len(g['params']) for g in groups)} "
                "tensors) but has no optimizer, so they will not train. Pass optimizer=..., or add "
                "quantizer.new_param_groups to your optimizer with add_param_group().",
                stacklevel=3,
            )
            return
        add_param_groups(self.optimizer, groups)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to know: whether the model was prepared, and by what.

        The quantization state proper (EMA ranges, scales, learned clipping values) lives in the
        model's state dict. A resumed run must prepare the model again *before* loading the model
        and optimizer state (see :class:`~distiller.scheduler.QuantizationPolicy`).
        """
        return {"prepared": self.prepared, "type": type(self).__name__}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        kind = state.get("type")
        if kind is not None and kind != type(self).__name__:
            raise QuantizationError(
                f"the saved quantizer state is of a {kind}, but the schedule builds a {type(self).__name__}. "
                "Fix: resume with the schedule the checkpoint was trained with."
            )


def add_param_groups(optimizer: torch.optim.Optimizer, groups: Iterable[Mapping[str, Any]]) -> None:
    """Add parameter groups to ``optimizer`` so that they follow the LR schedule of its first group.

    A group without ``lr`` gets the first group's current LR; with ``lr`` it is scaled by the
    decay the first group has had so far. ``initial_lr`` (what PyTorch LR schedulers start from) is
    set consistently, so a scheduler extended with the new group gives it the same schedule.
    Parameters the optimizer already holds are skipped.
    """
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    ref = optimizer.param_groups[0] if optimizer.param_groups else {}
    ref_lr, ref_initial = ref.get("lr"), ref.get("initial_lr")
    for group in groups:
        group = dict(group)
        group["params"] = [p for p in group["params"] if id(p) not in held]
        if not group["params"]:
            continue
        if "lr" not in group:
            if ref_lr is not None:
                group["lr"] = ref_lr
            if ref_initial is not None:
                group["initial_lr"] = ref_initial
        elif ref_initial:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["lr"] * ref_lr / ref_initial
        optimizer.add_param_group(group)
        held |= {id(p) for p in group["params"]}
