"""Optimizers the app can build by name (``--optimizer``), and rebuild from a checkpoint."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from distiller.registry import Registry

OPTIMIZERS: Registry[type[torch.optim.Optimizer]] = Registry("optimizer")
OPTIMIZERS.register("sgd", torch.optim.SGD)
OPTIMIZERS.register("adam", torch.optim.Adam)
OPTIMIZERS.register("adamw", torch.optim.AdamW)


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``name`` is a registered name (``sgd``) or a class name as checkpoints store it (``SGD``)."""
    key = name.lower()
    cls = OPTIMIZERS.get(key)
    if cls is torch.optim.SGD:
        return cls(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return cls(params, lr=lr, weight_decay=weight_decay)
