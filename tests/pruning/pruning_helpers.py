"""Small models and helpers shared by the pruning tests (imported as ``pruning_helpers``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.naming import normalize_module_name
from distiller.sparsity import MaskSet


def conv_model() -> nn.Sequential:
    """conv(3->8) -> BN -> ReLU -> conv(8->16) -> ReLU -> pool -> Linear(16->8)."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 8),
    )


def linear_model() -> nn.Sequential:
    """Linear(16->32) -> ReLU -> Linear(32->8)."""
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


MODELS = {"conv": conv_model, "linear": linear_model}
INPUTS = {"conv": (3, 6, 6), "linear": (16,)}


def batch(kind: str, n: int = 8, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *INPUTS[kind], generator=g), torch.randint(0, 8, (n,), generator=g)


def window_meta(model: nn.Module, epoch: int = 0, start: int = 0, end: int = 30, freq: int = 2) -> dict[str, Any]:
    return {
        "current_epoch": epoch,
        "starting_epoch": start,
        "ending_epoch": end,
        "frequency": freq,
        "model": model,
        "optimizer": None,
    }


def compute_masks(model: nn.Module, pruner: Any, meta: Mapping[str, Any], masks: MaskSet | None = None) -> MaskSet:
    """Run ``pruner`` over every parameter, as a PruningPolicy does, without applying the masks."""
    masks = MaskSet.for_model(model) if masks is None else masks
    for name, param in model.named_parameters():
        pruner.set_param_mask(param, name, masks, meta)
    return masks


def params(model: nn.Module) -> dict[str, torch.Tensor]:
    return {normalize_module_name(n): p for n, p in model.named_parameters()}
