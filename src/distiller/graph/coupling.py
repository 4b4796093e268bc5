"""Channel coupling: the groups of channels that must be removed together, and their importance.

A *channel* here is a set of slots (see :mod:`distiller.graph.channel_ids`) joined by residual
additions, multiplications, grouped convolutions and repeated module calls. Channels used by the
same tensors form a :class:`ChannelGroup`: e.g. the 16 channels of ResNet-20's first stage are one
group whose members are the stem convolution's filters, every block's second convolution's filters,
their BatchNorms, and the input channels of every convolution that reads the stage. Removing channel
``j`` of a group removes ``positions[j]`` from every member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from distiller.errors import GraphError
from distiller.graph.channel_ids import SlotAnalysis, SlotMember, propagate_slots
from distiller.graph.model_graph import ModelGraph
from distiller.naming import normalize_module_name


@dataclass
class GroupMember:
    """One tensor dimension of a group: ``positions[j]`` are its indices that carry channel ``j``."""

    tensor: str
    dim: int
    role: str  # producer, consumer or passive (see SlotMember)
    layer: str
    positions: list[list[int]]


@dataclass
class ChannelGroup:
    """Channels that are removed together, with every tensor dimension they occupy."""

    index: int
    members: list[GroupMember]
    num_channels: int
    blocked: str | None = None  # why the group cannot be pruned, or None

    @property
    def prunable(self) -> bool:
        return self.blocked is None and any(m.role == "producer" for m in self.members)

    def layers(self, role: str | None = None) -> list[str]:
        """Layers with a member of ``role`` (all roles if None), in graph order, each once."""
        return list(dict.fromkeys(m.layer for m in self.members if role is None or m.role == role))

    @property
    def producers(self) -> list[GroupMember]:
        return [m for m in self.members if m.role == "producer"]

    @property
    def consumers(self) -> list[GroupMember]:
        return [m for m in self.members if m.role == "consumer"]

    def slices(self, tensors: Mapping[str, torch.Tensor], channel: int, roles: Sequence[str]) -> list[torch.Tensor]:
        """The parts of ``tensors`` (by canonical name) that carry ``channel``, for members of ``roles``."""
        out = []
        for m in self.members:
            if m.role in roles and m.tensor in tensors:
                index = torch.tensor(m.positions[channel], dtype=torch.long, device=tensors[m.tensor].device)
                out.append(tensors[m.tensor].index_select(m.dim, index))
        return out

    def per_channel(self, member: GroupMember, values: torch.Tensor) -> torch.Tensor:
        """Sum ``values`` (one per index of ``member``'s dim) over each channel's positions."""
        channels = torch.tensor([c for c, ps in enumerate(member.positions) for _ in ps], dtype=torch.long)
        flat = torch.tensor([p for ps in member.positions for p in ps], dtype=torch.long)
        out = torch.zeros(self.num_channels, dtype=values.dtype)
        return out.index_add_(0, channels, values.cpu()[flat])

    def importance(
        self,
        tensors: Mapping[str, torch.Tensor],
        p: float = 1.0,
        reduce: str = "sum",
        roles: Sequence[str] = ("producer", "consumer"),
    ) -> torch.Tensor:
        """Score of every channel: the ``p``-norms of its slices in the members of ``roles`` (weights
        only), combined by ``reduce`` (``sum``, ``mean`` or ``max``). Ranks a coupled group jointly."""
        if reduce not in ("sum", "mean", "max"):
            raise GraphError(f"Unknown group-importance reduction {reduce!r}; use sum, mean or max.")
        norms = []
        for m in self.members:
            if m.role in roles and m.tensor.endswith("weight") and m.tensor in tensors:
                t = tensors[m.tensor].detach().float()
                powered = (
                    t.abs().pow(p).sum(dim=[d for d in range(t.dim()) if d != m.dim]) if t.dim() > 1 else t.abs().pow(p)
                )
                norms.append(self.per_channel(m, powered).pow(1.0 / p))
        if not norms:
            return torch.zeros(self.num_channels)
        stacked = torch.stack(norms)
        return {"sum": stacked.sum, "mean": stacked.mean, "max": lambda dim: stacked.amax(dim)}[reduce](0)

    def zero_channels(self, tensors: Mapping[str, torch.Tensor], role: str) -> torch.Tensor:
        """Per channel: whether every ``role`` weight slice of it is zero (False when it has none)."""
        found = False
        nonzero = torch.zeros(self.num_channels)
        for m in self.members:
            if m.role == role and m.tensor.endswith("weight") and m.tensor in tensors:
                t = tensors[m.tensor].detach()
                counts = (t != 0).sum(dim=[d for d in range(t.dim()) if d != m.dim]) if t.dim() > 1 else (t != 0)
                nonzero += self.per_channel(m, counts.float())
                found = True
        return (nonzero == 0) if found else torch.zeros(self.num_channels, dtype=torch.bool)

    def describe(self) -> str:
        state = "prunable" if self.prunable else f"blocked: {self.blocked or 'no filters to remove'}"
        return f"group {self.index}: {self.num_channels} channels, producers {self.layers('producer')} ({state})"


def _components(num_slots: int, unions: list[torch.Tensor]) -> torch.Tensor:
    """Connected-component label (smallest slot id) of every slot."""
    labels = torch.arange(num_slots)
    if not unions or num_slots == 0:
        return labels
    pairs = torch.cat(unions, dim=1)
    a, b = pairs[0], pairs[1]
    while True:
        low = torch.minimum(labels[a], labels[b])
        new = labels.clone()
        new.scatter_reduce_(0, a, low, reduce="amin")
        new.scatter_reduce_(0, b, low, reduce="amin")
        new = new[new]  # pointer jumping
        if torch.equal(new, labels):
            return labels
        labels = new


def _group(analysis: SlotAnalysis) -> list[ChannelGroup]:
    labels = _components(analysis.num_slots, analysis.unions)
    blocked: dict[int, str] = {}
    for slot, reason in analysis.blocked.items():
        blocked.setdefault(int(labels[slot]), reason)
    # For every member, the positions of each channel (component) it carries.
    member_positions: list[dict[int, list[int]]] = []
    for member in analysis.members:
        positions: dict[int, list[int]] = {}
        for i, slot in enumerate(member.slots):
            if slot >= 0:
                positions.setdefault(int(labels[slot]), []).append(i)
        member_positions.append(positions)
    signature: dict[int, list[int]] = {}
    for k, positions in enumerate(member_positions):
        for channel in positions:
            signature.setdefault(channel, []).append(k)
    by_signature: dict[tuple, list[int]] = {}
    for channel, members in signature.items():
        key = (tuple(members), channel in blocked)
        by_signature.setdefault(key, []).append(channel)
    groups = []
    for (members, is_blocked), channels in by_signature.items():
        channels.sort(key=lambda c: member_positions[members[0]][c][0])
        group_members = [
            GroupMember(m.tensor, m.dim, m.role, m.layer, [member_positions[k][c] for c in channels])
            for k in members
            for m in (analysis.members[k],)
        ]
        reason = next((blocked[c] for c in channels if c in blocked), None) if is_blocked else None
        groups.append(ChannelGroup(0, group_members, len(channels), reason))
    order = {m.tensor: i for i, m in enumerate(analysis.members)}
    groups.sort(key=lambda g: min(order[m.tensor] for m in g.members))
    for i, g in enumerate(groups):
        g.index = i
    return groups


@dataclass
class ChannelCoupling:
    """All channel groups of a model; ``groups[i].index == i``."""

    groups: list[ChannelGroup] = field(default_factory=list)

    @property
    def prunable(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def group_of(self, layer: str, role: str = "producer") -> list[ChannelGroup]:
        """The groups in which ``layer`` has a member of ``role``."""
        layer = normalize_module_name(layer)
        return [g for g in self.groups if layer in g.layers(role)]

    def describe(self) -> str:
        return "\n".join(g.describe() for g in self.groups)


def channel_coupling(graph: ModelGraph) -> ChannelCoupling:
    """Compute the channel groups of the model of ``graph``.

    Raises:
        GraphError: the graph was not traced with ``torch.fx`` (module hooks do not see the
            functional operations that couple channels).
    """
    if graph.fx_module is None:
        raise GraphError(f"Channel coupling needs a torch.fx trace of the model, which failed: {graph.trace_error}")
    canonical = {name: normalize_module_name(name) for name, _ in graph.model.named_modules()}
    names = {node.fx_node: name for name, node in graph.nodes.items()}
    analysis = propagate_slots(graph.fx_module, names, canonical, graph.example_input)
    return ChannelCoupling(_group(analysis))


__all__ = ["ChannelCoupling", "ChannelGroup", "GroupMember", "SlotMember", "channel_coupling"]
