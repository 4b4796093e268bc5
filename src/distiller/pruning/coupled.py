"""Pruning whole coupled channel groups, ranked jointly.

A filter of a residual stage cannot go alone: every convolution that adds into the stage must lose
the same channel. :func:`coupled_group_masks` ranks each channel of a
:class:`~distiller.graph.coupling.ChannelGroup` by the norms of all its slices (producer filters and
consumer input channels), and masks the lowest-ranked ones in every member at once, so that the
masked model can be thinned exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch

from distiller.errors import ConfigError
from distiller.graph.coupling import ChannelGroup

CRITERIA = ("l1", "l2", "random")


def channels_to_prune(
    group: ChannelGroup,
    tensors: Mapping[str, torch.Tensor],
    fraction: float,
    *,
    criterion: str = "l1",
    reduce: str = "sum",
    roles: Sequence[str] = ("producer", "consumer"),
    generator: torch.Generator | None = None,
) -> list[int]:
    """The ``floor(fraction * channels)`` lowest-ranked channels of ``group`` (never all of them)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"The fraction of channels to prune must be in [0, 1], got {fraction}.")
    if criterion not in CRITERIA:
        raise ConfigError(f"Unknown group-importance criterion {criterion!r}; use one of {', '.join(CRITERIA)}.")
    count = min(math.floor(fraction * group.num_channels), group.num_channels - 1)
    if count <= 0:
        return []
    if criterion == "random":
        return sorted(torch.randperm(group.num_channels, generator=generator)[:count].tolist())
    scores = group.importance(tensors, p=1.0 if criterion == "l1" else 2.0, reduce=reduce, roles=roles)
    return sorted(torch.argsort(scores, stable=True)[:count].tolist())


def coupled_group_masks(
    groups: Iterable[ChannelGroup],
    tensors: Mapping[str, torch.Tensor],
    fraction: float,
    *,
    criterion: str = "l1",
    reduce: str = "sum",
    roles: Sequence[str] = ("producer", "consumer"),
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Masks ({weight name: 0/1 tensor}) that prune ``fraction`` of every group's channels in all the
    weights of ``roles`` (producer filters and consumer input channels by default)."""
    masks: dict[str, torch.Tensor] = {}
    for group in groups:
        if not group.prunable:
            continue
        chosen = channels_to_prune(group, tensors, fraction, criterion=criterion, reduce=reduce,
                                   generator=generator)
        if not chosen:
            continue
        for member in group.members:
            if member.role not in roles or not member.tensor.endswith("weight") or member.tensor not in tensors:
                continue
            mask = masks.setdefault(member.tensor, torch.ones_like(tensors[member.tensor]))
            index = torch.tensor([p for c in chosen for p in member.positions[c]], dtype=torch.long,
                                 device=mask.device)
            mask.index_fill_(member.dim, index, 0)
    return masks
