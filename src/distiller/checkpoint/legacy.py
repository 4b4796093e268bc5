"""Importing checkpoints written by the original Distiller (PyTorch <= 1.3, legacy pickles).

They are read with ``weights_only=True`` plus an allowlist of exactly the non-tensor globals they
contain, each mapped to an inert stand-in:

- ``distiller.thinning.ThinningRecipe`` (thinned models) -> :class:`distiller.thinning.ThinningRecipe`,
  a namedtuple with the same dotted name, converted to a :class:`ThinningPlan` right away;
- optimizer classes such as ``torch.optim.sgd.SGD`` (pickled as class objects under
  ``optimizer_type``) -> a marker class that only remembers the name, converted to ``"SGD"``.

Then the dict is normalized to the current format: canonical names (``module.`` removed) in the
state dict and masks, ``optimizer``/``optimizer_state_dict`` -> ``optimizer_state_dict``, top-level
``best_top1`` -> ``extras``, ``thinning_recipes`` -> ``thinning_plans``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from distiller.errors import CheckpointError
from distiller.naming import normalize_module_name
from distiller.thinning.legacy import LEGACY_RECIPE_PATH, ThinningRecipe
from distiller.thinning.plan import ThinningPlan

LEGACY_FORMAT = "distiller-legacy"
"""``format`` given to imported original checkpoints (they have no ``format`` key)."""


class LegacyClassReference:
    """Stands in for a class object pickled by reference (``optimizer_type``); holds only its name.

    If a malicious file tried to call it, it would build an empty ``LegacyClassReference``.
    """

    class_name = ""


def _optimizer_references() -> list[tuple[type, str]]:
    """(marker, pickled dotted name) for every optimizer class in ``torch.optim``."""
    refs = []
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer:
            marker = type(f"LegacyRef_{cls.__name__}", (LegacyClassReference,), {"class_name": cls.__name__})
            refs.append((marker, f"{cls.__module__}.{cls.__qualname__}"))
    return refs


LEGACY_SAFE_GLOBALS: list[tuple[Any, str]] = [(ThinningRecipe, LEGACY_RECIPE_PATH), *_optimizer_references()]
"""The allowlist for ``torch.serialization.safe_globals``: (stand-in, dotted name in the pickle)."""


def is_legacy(raw: Mapping[str, Any]) -> bool:
    """True for a dict without ``format`` but with a ``state_dict``: the original Distiller's layout.

    Checkpoints of other older tools (e.g. PyTorch's ImageNet example: ``epoch``, ``arch``,
    ``state_dict``, ``optimizer``) share that layout and are imported the same way.
    """
    return "format" not in raw and "state_dict" in raw


def class_name(value: Any) -> str | None:
    """``"SGD"`` for an ``optimizer_type`` that is a marker, a string, or None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, type) and issubclass(value, LegacyClassReference):
        return value.class_name
    return str(value)


def guess_optimizer_type(state: Mapping[str, Any] | None) -> str | None:
    """``"SGD"`` when an anonymous optimizer state has SGD's hyper-parameters (the SSL checkpoints)."""
    groups = (state or {}).get("param_groups") or []
    if groups and all({"momentum", "dampening", "nesterov"} <= set(g) for g in groups):
        return "SGD"
    return None


def normalize_masks(sched: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The scheduler state with canonical mask names."""
    if sched is None:
        return None
    sched = dict(sched)
    masks = sched.get("masks_dict")
    if isinstance(masks, Mapping):
        sched["masks_dict"] = {normalize_module_name(k): v for k, v in masks.items()}
    return sched


def convert_legacy(raw: Mapping[str, Any]) -> dict[str, Any]:
    """An original Distiller checkpoint dict, in the current format (``format == LEGACY_FORMAT``)."""
    extras = dict(raw.get("extras") or {})
    if "best_top1" in raw:
        extras.setdefault("best_top1", raw["best_top1"])
    optimizer_state = raw.get("optimizer_state_dict", raw.get("optimizer"))
    optimizer_type = class_name(raw.get("optimizer_type")) or guess_optimizer_type(optimizer_state)
    recipes = raw.get("thinning_recipes") or []
    if not isinstance(raw["state_dict"], Mapping):
        raise CheckpointError(f"its 'state_dict' is a {type(raw['state_dict']).__name__}, not a dict of tensors.")
    return {
        "format": LEGACY_FORMAT,
        "state_dict": {normalize_module_name(k): v for k, v in raw["state_dict"].items()},
        "arch": raw.get("arch"),
        "dataset": raw.get("dataset"),
        "epoch": raw.get("epoch"),
        "extras": extras,
        "optimizer_state_dict": optimizer_state,
        "optimizer_type": optimizer_type,
        "compression_sched": normalize_masks(raw.get("compression_sched")),
        "thinning_plans": [ThinningPlan.from_legacy_recipe(r).to_dict() for r in recipes],
        "quantizer_metadata": raw.get("quantizer_metadata"),
        "rng_state": None,
    }
