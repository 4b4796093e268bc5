"""Canonical names of modules and parameters.

Wrappers such as ``nn.DataParallel`` and DDP insert a ``module`` element into every name
(``module.layer1.0.conv1.weight``); the original Distiller even wrapped only ``features`` of
AlexNet/VGG (``features.module.0.weight``). Masks, schedules and checkpoints use the canonical
name, without any ``module`` element; both spellings are accepted on input.
"""

from __future__ import annotations


def normalize_module_name(name: str) -> str:
    """Drop every ``module`` path element: ``features.module.0.weight`` -> ``features.0.weight``."""
    return ".".join(part for part in name.split(".") if part != "module")


def normalize_state_dict_keys(state_dict: dict) -> dict:
    """A copy of ``state_dict`` (same order) with canonical keys."""
    return {normalize_module_name(k): v for k, v in state_dict.items()}
