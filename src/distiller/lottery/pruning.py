"""Magnitude pruning for lottery tickets: which weights to prune, and by how much each round.

Iterative magnitude pruning (IMP) removes a fraction ``p`` of the weights that are *still alive*
each round, so after ``R`` rounds a fraction ``1 - (1 - p)^R`` is gone. Weights already pruned are
never ranked again: their magnitude is zero by construction, and ranking them would make the
effective rate of a round smaller than asked.

Which tensors are pruned: the ``weight`` of every convolution and fully-connected layer, as in
Frankle & Carbin (2019). Biases and normalization parameters are a negligible share of the
parameters and keep the network's function well-conditioned, so they are never masked.

Two strategies:

* ``global`` (default): one ranking over all pruned tensors together. Layers with many redundant
  weights (large fully-connected layers) give up more, which is what lets tickets reach high sparsity
  without starving small layers (Frankle et al., "Stabilizing the Lottery Ticket Hypothesis").
* ``layerwise``: each tensor loses the same fraction, as in the original paper's LeNet experiments.

The output layer can be pruned at a different rate (``last_layer_rate`` times ``p``): Frankle &
Carbin pruned it at half the rate of the other fully-connected layers, because every one of its
weights feeds a class score directly. With the global strategy the output layer is then ranked on
its own. The default (rate 1.0) treats it like any other layer.

All functions here are pure: ``(tensors, masks, fraction) -> masks``; nothing touches a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.sparsity.criteria import bottom_k_keep_map

__all__ = [
    "STRATEGIES",
    "global_magnitude_masks",
    "layerwise_magnitude_masks",
    "masks_sparsity",
    "output_layer_weight",
    "prunable_weights",
    "prune_round_masks",
]

STRATEGIES = ("global", "layerwise")
_PRUNED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _check_fraction(fraction: float, what: str = "prune fraction") -> float:
    value = float(fraction)
    if math.isnan(value) or not 0.0 <= value < 1.0:
        raise ConfigError(
            f"The {what} must be in [0, 1): the share of the remaining weights pruned in one round "
            f"(e.g. 0.2), got {fraction!r}."
        )
    return value


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{canonical name: weight}`` of the convolution and linear layers, in module order.

    Raises:
        ConfigError: the model has no such layer (nothing could be pruned).
    """
    weights = {
        normalize_module_name(f"{name}.weight" if name else "weight"): module.weight
        for name, module in model.named_modules()
        if isinstance(module, _PRUNED_TYPES) and isinstance(getattr(module, "weight", None), torch.Tensor)
    }
    if not weights:
        raise ConfigError(
            f"{type(model).__name__} has no convolution or linear layer; lottery-ticket pruning masks their weights."
        )
    return weights


def output_layer_weight(model: nn.Module) -> str:
    """The name of the last convolution/linear weight in module order (the classifier, for the zoo's models)."""
    return list(prunable_weights(model))[-1]


def _alive(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Boolean map of the weights not pruned yet."""
    if mask is None:
        return torch.ones_like(tensor, dtype=torch.bool)
    if mask.shape != tensor.shape:
        raise ConfigError(f"A mask of shape {tuple(mask.shape)} does not fit a weight of shape {tuple(tensor.shape)}.")
    return mask.to(tensor.device) != 0


def _prune_among_alive(
    tensors: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor | None], fraction: float
) -> dict[str, torch.Tensor]:
    """Prune ``round(fraction * alive)`` smallest-magnitude alive weights of ``tensors`` ranked together."""
    names = list(tensors)
    with torch.no_grad():
        alive = [_alive(tensors[n], masks.get(n)) for n in names]
        # Dead weights rank above every live one (+inf), so they are never chosen again.
        scores = torch.cat(
            [torch.where(a, tensors[n].detach().abs().float(), torch.inf).reshape(-1) for n, a in zip(names, alive)]
        )
        n_alive = int(sum(int(a.sum()) for a in alive))
        keep = bottom_k_keep_map(scores, int(round(fraction * n_alive)))
        out: dict[str, torch.Tensor] = {}
        start = 0
        for name, a in zip(names, alive):
            t = tensors[name]
            part = keep[start : start + t.numel()].reshape(t.shape) & a
            out[name] = part.to(dtype=t.dtype if t.is_floating_point() else torch.float32)
            start += t.numel()
    return out


def _as_tensors(weights: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(weights, nn.Module):
        return prunable_weights(weights)
    tensors = {normalize_module_name(k): v for k, v in weights.items()}
    if not tensors:
        raise ConfigError("No weights to prune were given.")
    return tensors


def global_magnitude_masks(
    weights: nn.Module | Mapping[str, torch.Tensor],
    fraction: float,
    masks: Mapping[str, torch.Tensor | None] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks that prune ``fraction`` of the alive weights, ranked by magnitude across all tensors.

    Args:
        weights: a model (its :func:`prunable_weights`) or ``{name: tensor}``.
        fraction: share of the weights still alive that this round removes, in [0, 1).
        masks: the current masks (``None`` or absent = nothing pruned yet); pruned weights stay pruned.

    Returns:
        ``{name: 0/1 mask}`` for every tensor; exactly ``round(fraction * alive)`` more zeros in all
        (ties are broken by position, so the result is deterministic).

    Raises:
        ConfigError: ``fraction`` outside [0, 1), or a mask of the wrong shape.
    """
    fraction = _check_fraction(fraction)
    return _prune_among_alive(_as_tensors(weights), dict(masks or {}), fraction)


def layerwise_magnitude_masks(
    weights: nn.Module | Mapping[str, torch.Tensor],
    fraction: float,
    masks: Mapping[str, torch.Tensor | None] | None = None,
    rates: Mapping[str, float] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks that prune ``fraction`` of each tensor's alive weights, tensor by tensor.

    Args:
        weights: a model (its :func:`prunable_weights`) or ``{name: tensor}``.
        fraction: share of each tensor's alive weights that this round removes, in [0, 1).
        masks: the current masks; pruned weights stay pruned.
        rates: per-tensor multipliers of ``fraction`` (e.g. ``{"fc.weight": 0.5}``); default 1.

    Raises:
        ConfigError: a fraction outside [0, 1), or a mask of the wrong shape.
    """
    fraction = _check_fraction(fraction)
    tensors = _as_tensors(weights)
    masks = dict(masks or {})
    rates = dict(rates or {})
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        rate = _check_fraction(fraction * rates.get(name, 1.0), f"prune fraction of {name!r}")
        out.update(_prune_among_alive({name: tensor}, masks, rate))
    return out


def prune_round_masks(
    model: nn.Module,
    fraction: float,
    masks: Mapping[str, torch.Tensor | None] | None = None,
    *,
    strategy: str = "global",
    last_layer_rate: float = 1.0,
) -> dict[str, torch.Tensor]:
    """One IMP round on ``model``'s trained weights: the masks of the next ticket.

    Args:
        model: the trained model (its convolution and linear weights are ranked).
        fraction: share of the alive weights pruned this round.
        masks: the masks the model was trained under (``None`` for the dense round).
        strategy: ``"global"`` or ``"layerwise"`` (see the module docstring).
        last_layer_rate: the output layer is pruned at ``last_layer_rate * fraction``; with the global
            strategy and a rate other than 1 it is ranked on its own.

    Raises:
        ConfigError: unknown strategy, a fraction outside [0, 1), a negative rate.
    """
    if strategy not in STRATEGIES:
        raise ConfigError(f"Unknown lottery pruning strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    if not last_layer_rate >= 0:
        raise ConfigError(f"The last-layer rate multiplies the prune fraction; it must be >= 0, got {last_layer_rate}.")
    weights = prunable_weights(model)
    last = list(weights)[-1]
    if strategy == "layerwise":
        return layerwise_magnitude_masks(weights, fraction, masks, rates={last: last_layer_rate})
    if last_layer_rate == 1.0 or len(weights) == 1:
        return global_magnitude_masks(weights, fraction, masks)
    rest = {name: w for name, w in weights.items() if name != last}
    out = global_magnitude_masks(rest, fraction, masks)
    out.update(layerwise_magnitude_masks({last: weights[last]}, fraction * last_layer_rate, masks))
    return {name: out[name] for name in weights}


def masks_sparsity(masks: Mapping[str, torch.Tensor | None]) -> tuple[float, int, int]:
    """``(sparsity in percent, pruned count, total count)`` over the tensors that have a mask."""
    total = pruned = 0
    for mask in masks.values():
        if mask is None:
            continue
        total += mask.numel()
        pruned += int((mask == 0).sum())
    return (100.0 * pruned / total if total else 0.0), pruned, total
