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

from distiller.distributed.rng import same_on_all_ranks
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
        order = same_on_all_ranks(torch.randperm(group.num_channels, generator=generator))  # rank 0's order
        return sorted(order[:count].tolist())
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
        chosen = channels_to_prune(
            group, tensors, fraction, criterion=criterion, reduce=reduce, roles=roles, generator=generator
        )
        if not chosen:
            continue
        for member in group.members:
            if member.role not in roles or not member.tensor.endswith("weight") or member.tensor not in tensors:
                continue
            mask = masks.setdefault(member.tensor, torch.ones_like(tensors[member.tensor]))
            index = torch.tensor([p for c in chosen for p in member.positions[c]], dtype=torch.long, device=mask.device)
            mask.index_fill_(member.dim, index, 0)
    return masks


class CoupledRanking:
    """``group_dependency: Coupled`` for ranked structure pruners: a listed filter (or channel) tensor
    is pruned by ranking its whole coupled group jointly, so every member loses the same channels and
    the result can be thinned. One ranking per group per pruning round."""

    def __init__(self) -> None:
        self._coupling: tuple[tuple, object] | None = None  # (parameter shapes, ChannelCoupling)
        self._round: dict[int, list[int]] = {}
        self._seen: set[str] = set()

    def _groups(self, model: torch.nn.Module, dataset: str | None):
        from distiller.graph import build_graph  # the graph imports torch.fx; only coupled pruning needs it
        from distiller.graph.coupling import channel_coupling

        shapes = tuple(tuple(p.shape) for p in model.parameters())
        if self._coupling is None or self._coupling[0] != shapes:  # thinning changes the structure
            self._coupling = (shapes, channel_coupling(build_graph(model, dataset)))
        return self._coupling[1]

    def partner(
        self, param_name: str, listed: Sequence[str], dim: int, model: torch.nn.Module, dataset: str | None = None
    ) -> str | None:
        """A listed tensor that shares a prunable group with ``param_name`` (along ``dim``), if any:
        every producer of a group a listed tensor is in is pruned with it."""
        for group in self._groups(model, dataset).groups:
            names = {
                m.tensor for m in group.members if m.dim == dim and m.role == ("producer" if dim == 0 else "consumer")
            }
            if group.prunable and param_name in names:
                return next((n for n in listed if n in names), None)
        return None

    def mask(
        self,
        param: torch.Tensor,
        param_name: str,
        fraction: float,
        dim: int,
        *,
        model: torch.nn.Module | None,
        dataset: str | None = None,
        p: float = 1.0,
    ) -> torch.Tensor | None:
        """The mask of ``param`` (its structures along ``dim``), or None when it is in no prunable group."""
        if model is None:
            raise ConfigError("group_dependency: Coupled needs the model; the scheduler passes it in 'meta'.")
        if param_name in self._seen:  # a new round: re-rank
            self._seen.clear()
            self._round.clear()
        self._seen.add(param_name)
        coupling = self._groups(model, dataset)
        tensors = {k: v.detach() for k, v in model.named_parameters()}
        from distiller.naming import normalize_module_name

        tensors = {normalize_module_name(k): v for k, v in tensors.items()}
        mask = None
        for group in coupling.groups:
            member = next((m for m in group.members if m.tensor == param_name and m.dim == dim), None)
            if member is None or not group.prunable:
                continue
            if group.index not in self._round:
                self._round[group.index] = channels_to_prune(
                    group, tensors, fraction, criterion="l2" if p == 2 else "l1"
                )
            chosen = self._round[group.index]
            if mask is None:
                mask = torch.ones_like(param)
            if chosen:
                index = torch.tensor(
                    [i for c in chosen for i in member.positions[c]], dtype=torch.long, device=param.device
                )
                mask.index_fill_(dim, index, 0)
        return mask
