"""Parameter names inside component arguments: canonical spelling, regexes, and checks.

Original schedules name parameters as ``named_parameters()`` spelled them on a DataParallel model:
``module.layer1.0.conv1.weight`` for ResNets and ``features.module.0.weight`` for AlexNet/VGG
(only ``features`` was wrapped). We drop every ``module`` element (DESIGN.md, "Masks") in the
arguments that hold parameter names, before the component is built:

- ``weights``: a name or a list of names;
- ``levels``, ``thresholds``, ``sensitivities``, ``reg_regims``: maps keyed by name (``'*'`` = every
  other parameter).

An entry that is not a parameter name of the model is tried as a regular expression (full match)
and expanded into the names it matches. An entry that matches nothing is an error: the original
silently pruned nothing for a whole training run.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from distiller.errors import ConfigError
from distiller.registry import did_you_mean

__all__ = [
    "NAME_LIST_ARGS",
    "NAME_MAP_ARGS",
    "SPARSITY_ARGS",
    "canonical_name",
    "check_sparsities",
    "normalize_name_args",
    "resolve_name",
]

NAME_LIST_ARGS = ("weights",)
NAME_MAP_ARGS = ("levels", "thresholds", "sensitivities", "reg_regims")
SPARSITY_ARGS = ("initial_sparsity", "final_sparsity", "desired_sparsity", "sparsity")
SPARSITY_MAP_ARGS = ("levels",)
SPARSITY_RANGE_ARGS = ("sparsity_range",)

_MODULE_ELEMENT = re.compile(r"(^|(?<=\.))module\\?\.")

Fail = Callable[[tuple[Any, ...], str, str], ConfigError]
"""``fail(sub_path, problem, fix)`` builds an error located at ``sub_path`` under the component."""


def canonical_name(name: str) -> str:
    """Drop ``module`` path elements, also in regex spelling (``module\\.``)."""
    return _MODULE_ELEMENT.sub("", name)


def resolve_name(entry: str, params: Sequence[str]) -> list[str]:
    """The parameters ``entry`` denotes: itself if it is one, else the full matches of it as a regex.

    Returns an empty list when nothing matches (the caller reports it).

    Raises:
        re.error: ``entry`` is neither a parameter name nor a valid regex.
    """
    name = canonical_name(entry)
    if name in params:
        return [name]
    pattern = re.compile(name)
    return [p for p in params if pattern.fullmatch(p)]


def _resolve(entry: Any, params: Sequence[str], path: tuple[Any, ...], fail: Fail) -> list[str]:
    if not isinstance(entry, str):
        raise fail(path, f"expected a parameter name, got {entry!r}.", "write the name as named_parameters() gives it.")
    try:
        names = resolve_name(entry, params)
    except re.error as exc:
        raise fail(
            path,
            f"{entry!r} is not a parameter of the model, nor a valid regular expression ({exc}).",
            "copy the name from `distiller classify --summary sparsity`, or fix the regex.",
        ) from None
    if not names:
        hint = did_you_mean(canonical_name(entry), list(params))
        raise fail(
            path,
            f"{entry!r} matches no parameter of the model.{hint}",
            "use a name the model has (with or without 'module.'); the original silently pruned nothing here.",
        )
    return names


def normalize_name_args(args: Mapping[str, Any], params: Sequence[str], fail: Fail) -> dict[str, Any]:
    """A copy of ``args`` whose parameter-name arguments are canonical and checked against ``params``.

    Raises:
        ConfigError: (via ``fail``) a name or regex matching nothing, or a malformed list/map.
    """
    out = dict(args)
    for key in NAME_LIST_ARGS:
        if key not in out or out[key] is None:
            continue
        value = out[key]
        if isinstance(value, str):
            names = _resolve(value, params, (key,), fail)
            out[key] = names[0] if len(names) == 1 and canonical_name(value) == names[0] else names
            continue
        if not isinstance(value, list):
            raise fail((key,), f"expected a list of parameter names, got {value!r}.", f"write {key}: [name1, name2].")
        if not value:
            raise fail((key,), "the list is empty, so nothing would be pruned.", "list at least one parameter name.")
        resolved: list[str] = []
        for i, entry in enumerate(value):
            for name in _resolve(entry, params, (key, i), fail):
                if name not in resolved:
                    resolved.append(name)
        out[key] = resolved
    for key in NAME_MAP_ARGS:
        if key not in out or out[key] is None:
            continue
        value = out[key]
        if not isinstance(value, Mapping):
            raise fail(
                (key,), f"expected a map of parameter name -> value, got {value!r}.", f"write {key}: {{name: value}}."
            )
        explicit: dict[str, Any] = {}
        expanded: dict[str, Any] = {}
        for entry, v in value.items():
            if entry == "*":
                explicit["*"] = v
                continue
            names = _resolve(entry, params, (key, entry), fail)
            if len(names) == 1 and canonical_name(entry) == names[0]:
                explicit[names[0]] = v
            else:
                for name in names:
                    expanded.setdefault(name, v)
        merged = dict(explicit)
        for name, v in expanded.items():
            merged.setdefault(name, v)
        out[key] = merged
    return out


def _check_fraction(value: Any, path: tuple[Any, ...], fail: Fail) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise fail(
            path, f"a sparsity must be a number in [0, 1], got {value!r}.", "write a fraction, e.g. 0.5 for 50%."
        )
    if not (math.isfinite(value) and 0 <= value <= 1):
        percent = " (a percentage? sparsity is a fraction)" if 1 < value <= 100 else ""
        raise fail(
            path,
            f"sparsity {value!r} is outside [0, 1]{percent}.",
            f"write a fraction, e.g. {min(max(value / 100, 0.0), 1.0) if 1 < value <= 100 else 0.5}.",
        )


def check_sparsities(args: Mapping[str, Any], fail: Fail) -> None:
    """Every sparsity argument of a pruner is a fraction in [0, 1].

    Raises:
        ConfigError: (via ``fail``) a non-number or a value outside [0, 1].
    """
    for key in SPARSITY_ARGS:
        if key in args and args[key] is not None:
            _check_fraction(args[key], (key,), fail)
    for key in SPARSITY_RANGE_ARGS:
        if key in args and args[key] is not None:
            value = args[key]
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise fail((key,), f"expected [low, high], got {value!r}.", f"write {key}: [0.1, 0.5].")
            for i, v in enumerate(value):
                _check_fraction(v, (key, i), fail)
    for key in SPARSITY_MAP_ARGS:
        if isinstance(args.get(key), Mapping):
            for name, v in args[key].items():
                _check_fraction(v, (key, name), fail)
