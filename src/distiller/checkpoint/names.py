"""Canonical module and parameter names, as checkpoints store them.

DataParallel/DDP insert a ``module`` path element into every name (``module.layer1.0.conv1.weight``;
the original wrapped only ``features`` of AlexNet/VGG: ``features.module.0.weight``). Checkpoints
store names without it, and accept both spellings on input. The rule itself lives in
:mod:`distiller.naming`, shared with masks and schedules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from distiller.naming import normalize_module_name

V = TypeVar("V")

__all__ = ["normalize_module_name", "normalize_param_name", "normalize_names"]


def normalize_param_name(name: str) -> str:
    """Canonical parameter/buffer name: the module path normalized, the tensor attribute kept."""
    module, sep, attr = name.rpartition(".")
    if not sep:
        return name
    module = normalize_module_name(module)
    return f"{module}.{attr}" if module else attr


def normalize_names(mapping: Mapping[str, V]) -> dict[str, V]:
    """A copy of ``mapping`` (same order) keyed by canonical parameter names."""
    return {normalize_param_name(k): v for k, v in mapping.items()}
