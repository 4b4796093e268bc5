"""Prune from Python, without a schedule: build a pruner from a config dict and run it once.

::

    from distiller.pruning import prune

    masks = prune(model, {"class": "L1RankedStructureParameterPruner", "group_type": "Filters",
                          "desired_sparsity": 0.5, "weights": ["layer1.0.conv1.weight"]})

The masks are applied to the model and returned as a :class:`~distiller.sparsity.MaskSet`; keep
them to re-apply after optimizer steps while fine-tuning (``masks.apply(model, is_forward=False)``)
or save them in a checkpoint (``scheduler_state=masks.state_dict()``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.pruning.base import PRUNERS, Pruner
from distiller.registry import did_you_mean
from distiller.sparsity.masks import Masker, MaskSet

__all__ = ["build_pruner", "prune"]


def build_pruner(config: Mapping[str, Any], model: nn.Module | None = None, *, name: str | None = None) -> Any:
    """Instantiate the pruner a YAML-style ``config`` describes, through :data:`PRUNERS` only.

    Args:
        config: ``{"class": <registered name>, <constructor arguments>...}``; ``name`` may be
            given inside it.
        model: passed to constructors that take a ``model`` argument (``StructureParameterPruner``).
        name: the instance name when ``config`` has none (default: the class name).

    Raises:
        ConfigError: no or unknown ``class`` (with close matches), an unknown argument (with
            close matches), a missing required argument, or an invalid value.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"A pruner config must be a mapping with a 'class' key; got {type(config).__name__}.")
    args = dict(config)
    class_name = args.pop("class", None)
    if not class_name:
        raise ConfigError(f"A pruner config needs a 'class' key naming a registered pruner; got keys {sorted(args)}.")
    cls = PRUNERS.get(class_name)
    args.setdefault("name", name or class_name)
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "model" in params and "model" not in args:
        args["model"] = model
    if not takes_any:
        allowed = [k for k, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        for key in args:
            if key not in allowed:
                raise ConfigError(
                    f"{class_name} has no argument {key!r}.{did_you_mean(key, allowed)} "
                    f"Its arguments: {', '.join(a for a in allowed if a != 'name')}."
                )
        missing = [
            k
            for k, p in params.items()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and k not in args
        ]
        if missing:
            raise ConfigError(f"{class_name} {args['name']!r} is missing required argument(s): {', '.join(missing)}.")
    try:
        return cls(**args)
    except ConfigError:
        raise
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"Cannot build {class_name} {args['name']!r}: {err}") from err


def _default_meta(model: nn.Module, epoch: int, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    base = {
        "current_epoch": epoch,
        "starting_epoch": epoch,
        "ending_epoch": epoch + 1,
        "frequency": 1,
        "model": model,
        "optimizer": None,
    }
    base.update(meta or {})
    return base


def prune(
    model: nn.Module,
    pruner_or_config: Pruner | Mapping[str, Any] | Any,
    *,
    masks: MaskSet | None = None,
    epoch: int = 0,
    meta: Mapping[str, Any] | None = None,
) -> MaskSet:
    """Run a pruner once over ``model``, apply its masks, and return them.

    Args:
        model: the model to prune (in place).
        pruner_or_config: a pruner object (anything with ``set_param_mask``) or a config dict
            for :func:`build_pruner`.
        masks: masks to update (e.g. from an earlier call); a new :class:`MaskSet` by default.
        epoch: the epoch the pruner sees (``current_epoch`` and ``starting_epoch``).
        meta: extra or overriding meta keys, e.g. ``{"starting_epoch": 0, "ending_epoch": 30,
            "frequency": 2}`` to evaluate an AGP pruner at ``epoch`` of that window.

    Returns:
        The masks; parameters the pruner did not touch have ``mask`` None (or their old mask).

    Raises:
        ConfigError: a bad config, or the pruner names parameters the model does not have.
    """
    pruner = build_pruner(pruner_or_config, model) if isinstance(pruner_or_config, Mapping) else pruner_or_config
    if not hasattr(pruner, "set_param_mask"):
        raise ConfigError(f"{pruner!r} is not a pruner: it has no set_param_mask(param, name, masks, meta).")
    if hasattr(pruner, "validate"):
        pruner.validate(model)
    masks = MaskSet.for_model(model) if masks is None else masks
    for param_name, _ in model.named_parameters():
        key = normalize_module_name(param_name)
        if key not in masks:
            masks[key] = Masker(key)
    full_meta = _default_meta(model, epoch, meta)
    for param_name, param in model.named_parameters():
        pruner.set_param_mask(param, param_name, masks, full_meta)
    masks.apply(model, is_forward=True)
    return masks
