"""Build a schedule's components through the registries and add its policies to a scheduler.

``class:`` names resolve only through the registries (DESIGN.md, "Registry"): a schedule cannot
build anything that was not registered. Constructor arguments are checked against the class
signature before the call, so a typo is reported with its YAML path and line instead of as a
``TypeError`` from deep inside a constructor. As in the original, a few extras are offered and
passed only when the class accepts them: ``model`` and ``name`` (the instance name), plus
``optimizer`` for quantizers and ``optimizer`` and ``last_epoch`` for LR schedulers.

Order (the original's): pruners, regularizers, quantizers, extensions and distillation are built
and their policies added in file order; LR schedulers are built afterwards (with
``last_epoch = resumed_epoch``) and their policies added last.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.config.names import check_sparsities, normalize_name_args
from distiller.config.schema import KIND_OF_SECTION, ComponentSpec, PolicySpec, ScheduleSpec
from distiller.config.yaml_source import YamlSource
from distiller.errors import ConfigError, DistillerError
from distiller.naming import normalize_module_name
from distiller.registry import Registry, did_you_mean
from distiller.scheduler import (
    CompressionScheduler,
    LRPolicy,
    PruningPolicy,
    QuantizationPolicy,
    RegularizationPolicy,
)

__all__ = ["REGISTRY_OF_SECTION", "build_components", "build_policies", "registry_for"]

REGISTRY_OF_SECTION: dict[str, tuple[str, str]] = {
    "pruners": ("distiller.pruning", "PRUNERS"),
    "regularizers": ("distiller.regularization", "REGULARIZERS"),
    "quantizers": ("distiller.quantization", "QUANTIZERS"),
    "lr_schedulers": ("distiller.scheduler", "LR_SCHEDULERS"),
    "extensions": ("distiller.scheduler", "EXTENSIONS"),
    "distillation": ("distiller.distillation", "DISTILLERS"),
}
EXTRAS: dict[str, tuple[str, ...]] = {
    "pruners": ("model", "name"),
    "regularizers": ("model", "name"),
    "quantizers": ("model", "name", "optimizer"),
    "lr_schedulers": ("model", "name", "optimizer", "last_epoch"),
    "extensions": ("model", "name"),
    "distillation": ("model", "name"),
}
NAME_SECTIONS = ("pruners", "regularizers")
REGULARIZATION_POLICY_ARGS = ("keep_mask",)


def registry_for(section: str) -> Registry | None:
    """The registry of ``section``, or ``None`` while its package does not exist yet.

    Imported lazily: the quantization package, for instance, arrives with a later issue, and a
    schedule without quantizers must load before that.
    """
    module_name, attr = REGISTRY_OF_SECTION[section]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, attr, None)


def _other_registries(class_name: str, section: str) -> list[str]:
    found = []
    for other in REGISTRY_OF_SECTION:
        if other == section:
            continue
        registry = registry_for(other)
        if registry is not None and class_name in registry:
            found.append(other)
    return found


def _resolve_class(source: YamlSource, spec: ComponentSpec) -> type:
    kind = spec.kind
    registry = registry_for(spec.section)
    path = (*spec.path, "class")
    if registry is None:
        module_name = REGISTRY_OF_SECTION[spec.section][0]
        raise source.error(
            path,
            f"no {kind} classes are available in this version ({module_name} is not installed), "
            f"so {spec.class_name!r} cannot be built.",
            f"remove the '{spec.section}' section, or update distiller.",
        )
    if spec.class_name in registry:
        return registry.get(spec.class_name)
    elsewhere = _other_registries(spec.class_name, spec.section)
    extra = (
        f" {spec.class_name!r} is a {KIND_OF_SECTION[elsewhere[0]]}: move it to '{elsewhere[0]}'." if elsewhere else ""
    )
    raise source.error(
        path,
        f"unknown {kind} class {spec.class_name!r}.{did_you_mean(spec.class_name, registry.names())}{extra}",
        f"use a registered {kind} (`distiller list {kind}s`), or register your class with "
        f"{REGISTRY_OF_SECTION[spec.section][1]}.register().",
    )


def _signature(cls: type) -> inspect.Signature | None:
    try:
        return inspect.signature(cls)
    except (TypeError, ValueError):
        return None


def _check_arguments(source: YamlSource, spec: ComponentSpec, cls: type, supplied: set[str]) -> None:
    sig = _signature(cls)
    if sig is None:
        return
    params = sig.parameters
    named = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    user_facing = [n for n in named if n not in supplied]
    for arg in spec.args:
        if arg in named or has_var_kw:
            continue
        raise source.error(
            (*spec.path, arg),
            f"{spec.class_name} does not accept the argument {arg!r}.{did_you_mean(arg, user_facing)}",
            f"{spec.class_name} accepts: {', '.join(user_facing) or '(no arguments)'}.",
        )
    missing = [
        n
        for n, p in params.items()
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and n not in spec.args
        and n not in supplied
    ]
    if missing:
        raise source.error(
            spec.path,
            f"{spec.class_name} {spec.name!r} lacks the required argument(s) {', '.join(repr(m) for m in missing)}.",
            f"add {', '.join(f'{m}: <value>' for m in missing)}.",
        )


def _fail_in(source: YamlSource, base: tuple[Any, ...]):
    def fail(sub: tuple[Any, ...], problem: str, fix: str) -> ConfigError:
        return source.error((*base, *sub), problem, fix)

    return fail


def _model_params(model: nn.Module) -> list[str]:
    return [normalize_module_name(n) for n, _ in model.named_parameters()]


def build_component(
    source: YamlSource,
    spec: ComponentSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    last_epoch: int,
    params: list[str],
) -> Any:
    """Resolve, check and instantiate one component.

    Raises:
        ConfigError: unknown class, unknown or missing argument, a parameter name matching
            nothing, a sparsity outside [0, 1], or any error the constructor raises (re-raised
            with the component's location).
    """
    cls = _resolve_class(source, spec)
    args = dict(spec.args)
    if spec.section in NAME_SECTIONS:
        args = normalize_name_args(args, params, _fail_in(source, spec.path))
        spec.args = args
    if spec.section == "pruners":
        check_sparsities(args, _fail_in(source, spec.path))
    if spec.section == "quantizers" and isinstance(args.get("model_activation_stats"), str):
        args["model_activation_stats"] = _stats_path(source, spec, args["model_activation_stats"])
    extras: dict[str, Any] = {"model": model, "name": spec.name}
    if spec.section in ("quantizers", "lr_schedulers"):
        extras["optimizer"] = optimizer
    if spec.section == "lr_schedulers":
        extras["last_epoch"] = last_epoch
        if optimizer is None:
            raise source.error(
                spec.path,
                "an LR scheduler needs the optimizer, but none was given.",
                "pass the optimizer to file_config/dict_config.",
            )
    sig = _signature(cls)
    accepted = set(sig.parameters) if sig is not None else set(extras)
    offered = {k: v for k, v in extras.items() if k in accepted}
    _check_arguments(source, spec, cls, set(offered))
    if spec.section == "lr_schedulers" and last_epoch != -1 and optimizer is not None:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    try:
        return cls(**{**args, **offered})
    except DistillerError as exc:
        fix = None if "Fix:" in str(exc) else f"check the arguments of {spec.class_name}."
        cls = type(exc) if isinstance(exc, ConfigError) else ConfigError
        raise source.error(spec.path, f"{spec.class_name} {spec.name!r}: {exc}", fix, cls) from exc
    except Exception as exc:  # noqa: BLE001 - any constructor failure is a configuration problem here
        raise source.error(
            spec.path,
            f"{spec.class_name} {spec.name!r} could not be built from these arguments: {type(exc).__name__}: {exc}",
            f"check the arguments of {spec.class_name} (their types and ranges).",
        ) from exc


def _stats_path(source: YamlSource, spec: ComponentSpec, value: str) -> str:
    """A quantizer's statistics file, looked up relative to the schedule file too (the original's
    samples give paths relative to its example folder)."""
    from distiller.quantization.api import resolve_stats_path

    if source.name.startswith("<"):
        return value
    try:
        return str(resolve_stats_path(value, Path(source.name)))
    except ConfigError as exc:
        raise source.error(
            (*spec.path, "model_activation_stats"),
            f"statistics file {value!r} not found.",
            "give a path relative to the working folder or to the schedule, or pass --qe-stats-file.",
        ) from exc


def build_components(
    spec: ScheduleSpec,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    sections: tuple[str, ...],
    last_epoch: int = -1,
) -> dict[tuple[str, str], Any]:
    """``{(section, name): instance}`` for the components of ``sections``, in file order."""
    params = _model_params(model)
    built: dict[tuple[str, str], Any] = {}
    for section in sections:
        for name, comp in spec.components.get(section, {}).items():
            built[(section, name)] = build_component(spec.source, comp, model, optimizer, last_epoch, params)
    return built


def _fix_or(exc: Exception, fix: str) -> str | None:
    return None if "Fix:" in str(exc) else fix


def _policy_for(source: YamlSource, ps: PolicySpec, component: Any, params: list[str]) -> Any:
    args_path = (*ps.path, ps.kind, "args")
    if ps.kind == "pruner":
        args = dict(ps.args or {})
        if "levels" in args:
            args = normalize_name_args(args, params, _fail_in(source, args_path))
            check_sparsities(args, _fail_in(source, args_path))
        try:
            return PruningPolicy(component, args)
        except ConfigError as exc:
            raise source.error(args_path, str(exc), _fix_or(exc, "correct the pruning policy's args.")) from None
    if ps.kind == "regularizer":
        args = dict(ps.args or {})
        for key in args:
            if key not in REGULARIZATION_POLICY_ARGS:
                raise source.error(
                    (*args_path, key),
                    f"unknown regularization-policy argument {key!r}.{did_you_mean(str(key), ['keep_mask'])}",
                    "the only argument is 'keep_mask: True|False'.",
                )
        try:
            return RegularizationPolicy(component, **args)
        except ConfigError as exc:
            raise source.error(args_path, str(exc), _fix_or(exc, "write 'keep_mask: True' or 'False'.")) from None
    if ps.args:
        source.warn(args_path, f"'args' are ignored for {ps.kind} policies.")
    if ps.kind == "quantizer":
        return QuantizationPolicy(component)
    if ps.kind == "lr_scheduler":
        return LRPolicy(component)
    if not callable(getattr(component, "on_epoch_begin", None)):
        raise source.error(
            (*ps.path, ps.kind),
            f"{ps.kind} {ps.instance_name!r} ({type(component).__name__}) is not a policy.",
            "register a ScheduledTrainingPolicy subclass for this section.",
        )
    return component


def build_policies(
    spec: ScheduleSpec,
    scheduler: CompressionScheduler,
    components: Mapping[tuple[str, str], Any],
    kinds: tuple[str, ...],
    model: nn.Module,
) -> list[tuple[PolicySpec, Any]]:
    """Add the policies of ``kinds`` to ``scheduler`` in file order; returns what was added."""
    params = _model_params(model)
    added = []
    for ps in spec.policies:
        if ps.kind not in kinds:
            continue
        policy = _policy_for(spec.source, ps, components[(ps.section, ps.instance_name)], params)
        try:
            scheduler.add_policy(policy, **ps.timing, name=ps.instance_name)
        except ConfigError as exc:
            fix = _fix_or(exc, "correct the policy's timing.")
            raise spec.source.error(ps.path, str(exc), fix, type(exc)) from None
        added.append((ps, policy))
    return added
