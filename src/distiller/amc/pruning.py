"""Which channels an AMC step removes (``--amc-prune-method``), and how their removal is applied.

``l1-rank``
    Rank the group's channels by the L1 norms of all their slices, in every producer filter and
    every consumer input channel of the coupled group (the ranking of
    :func:`~distiller.pruning.coupled.coupled_group_masks` and of the ``group_dependency: Coupled``
    pruners, so the schedule the search writes picks the same channels), and remove the weakest.
``stochastic-l1-rank``
    The same scores multiplied by ``1 + noise * N(0, 1)`` (``--amc-ranking-noise``), redrawn every
    step, so channels of nearly equal norm trade places from episode to episode. Multiplicative noise
    leaves the ranking's scale out of the flag's meaning.
``fm-reconstruction``
    Rank by L1 as above, then re-fit the kept input channels of every consumer so that it reproduces
    the outputs the dense network computed on a few sampled feature-map points (He et al. 2017,
    :mod:`distiller.pruning.fm_reconstruction`). Consumers that method does not support (grouped
    convolutions) are only masked.

How a removal is applied depends on ``--amc-prune-pattern``:

``filters``
    The producers' filters are masked. A pruned channel then still carries a constant (its
    BatchNorm's shift through the activation), which thinning folds into the consumers' biases or
    BatchNorms (:func:`~distiller.thinning.plan_from_masks`, as the ``FilterRemover`` extension does):
    the thinned network computes what the masked one does, except at zero-padded borders.
``channels`` (and ``fm-reconstruction``, which re-fits the consumers without the removed inputs)
    The consumers' input channels are masked too: nobody reads the channel, the masked network
    computes exactly what the thinned one does, and there is nothing to fold.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping

import numpy as np
import torch
from torch import nn

from distiller.graph.coupling import ChannelGroup
from distiller.naming import normalize_module_name
from distiller.pruning.fm_reconstruction import FeatureMapSamples, FMReconstructionChannelPruner, collect_feature_maps
from distiller.thinning import ThinningPlan

__all__ = [
    "METHODS",
    "ChannelReconstructor",
    "apply_masks",
    "channel_scores",
    "choose_channels",
    "mask_channels",
    "mask_roles",
    "thinning_plan",
]

METHODS = ("l1-rank", "stochastic-l1-rank", "fm-reconstruction")


def mask_roles(pattern: str, method: str) -> tuple[str, ...]:
    """The roles whose weights a removal masks (see the module docstring)."""
    if pattern == "filters" and method != "fm-reconstruction":
        return ("producer",)
    return ("producer", "consumer")


def channel_scores(
    group: ChannelGroup,
    tensors: Mapping[str, torch.Tensor],
    noise: float = 0.0,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """L1 score of every channel of ``group`` (all producer and consumer slices), with optional multiplicative noise."""
    scores = group.importance(tensors, p=1.0, reduce="sum", roles=("producer", "consumer")).double()
    if noise > 0:
        if rng is None:
            raise ValueError("stochastic ranking needs a random generator")
        factors = 1.0 + noise * rng.standard_normal(group.num_channels)
        scores = scores * torch.from_numpy(factors)
    return scores


def choose_channels(scores: torch.Tensor, count: int) -> list[int]:
    """The ``count`` lowest-scored channels (ties broken by index), sorted."""
    if count <= 0:
        return []
    return sorted(torch.argsort(scores, stable=True)[:count].tolist())


def mask_channels(
    group: ChannelGroup,
    channels: Iterable[int],
    tensors: Mapping[str, torch.Tensor],
    masks: MutableMapping[str, torch.Tensor],
    roles: tuple[str, ...] = ("producer", "consumer"),
) -> None:
    """Zero ``channels`` of ``group`` in the masks (created as ones) of every weight of ``roles``."""
    channels = list(channels)
    if not channels:
        return
    for member in group.members:
        if member.role not in roles or member.tensor not in tensors:
            continue
        if not member.tensor.endswith("weight"):
            continue
        tensor = tensors[member.tensor]
        mask = masks.get(member.tensor)
        if mask is None:
            mask = masks[member.tensor] = torch.ones_like(tensor)
        index = torch.tensor([p for c in channels for p in member.positions[c]], dtype=torch.long, device=mask.device)
        mask.index_fill_(member.dim, index, 0)


@torch.no_grad()
def apply_masks(params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> None:
    """Multiply the parameters (by canonical name) by their masks, in place."""
    for name, mask in masks.items():
        if name in params:
            params[name].mul_(mask)


def thinning_plan(groups: Mapping[int, ChannelGroup], removed: Mapping[int, list[int]], shapes: Mapping[str, tuple]):
    """The plan that removes ``removed[g]`` channels of every group ``g`` from every tensor they occupy.

    Built from the decisions themselves, not from the weights: a channel that training happened to
    zero elsewhere stays, so the thinned network is exactly the one whose MACs the episode counted.
    """
    positions: dict[tuple[str, int], set[int]] = {}
    for index, channels in removed.items():
        if not channels:
            continue
        for member in groups[index].members:
            if member.tensor in shapes:
                positions.setdefault((member.tensor, member.dim), set()).update(
                    p for c in channels for p in member.positions[c]
                )
    plan = ThinningPlan()
    for (tensor, dim), gone in positions.items():
        plan.add(tensor, dim, [i for i in range(shapes[tensor][dim]) if i not in gone])
    return plan


def _supported(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.groups == 1
        and not isinstance(module.padding, str)
        and module.padding_mode == "zeros"
    )


class ChannelReconstructor:
    """``fm-reconstruction``: feature-map samples of the dense network's consumers, and the re-fit.

    Args:
        model: the dense network (sampled once, at construction: the re-fit targets its outputs).
        groups: the groups whose consumers may be re-fitted.
        batches: input batches (tensors or ``(inputs, targets)``) to sample.
        points: ``--amc-reconstruct-pts``, output positions sampled per feature map and image.
        seed: seed of the sampled positions.
    """

    def __init__(
        self, model: nn.Module, groups: Iterable[ChannelGroup], batches: Iterable, points: int, seed: int = 0
    ) -> None:
        modules = {normalize_module_name(n): m for n, m in model.named_modules()}
        layers = sorted(
            {
                m.layer
                for g in groups
                for m in g.consumers
                if m.tensor.endswith("weight") and _supported(modules[m.layer])
            }
        )
        self.layers = set(layers)
        samples: dict[str, FeatureMapSamples] = {}
        if layers:
            generator = torch.Generator().manual_seed(seed)
            samples = collect_feature_maps(model, batches, layers, n_points_per_fm=points, generator=generator)
        weights = [f"{layer}.weight" for layer in layers]
        self._fitter = (
            FMReconstructionChannelPruner("amc", "Channels", 0.0, weights, feature_maps=samples) if layers else None
        )

    @torch.no_grad()
    def reconstruct(
        self, group: ChannelGroup, params: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]
    ) -> list[str]:
        """Re-fit the kept input channels of ``group``'s supported consumers; returns the layers re-fitted."""
        done: list[str] = []
        if self._fitter is None:
            return done
        for member in group.consumers:
            if member.layer not in self.layers or member.tensor not in params or member.dim != 1:
                continue
            param, mask = params[member.tensor], masks.get(member.tensor)
            if mask is None:
                continue
            keep = mask.abs().sum(dim=[d for d in range(mask.dim()) if d != 1]) > 0
            self._fitter.reconstruct(param, member.tensor, keep)
            param.mul_(mask)  # the fit writes every row; filters pruned earlier stay pruned
            done.append(member.layer)
        return done
