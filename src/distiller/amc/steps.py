"""The steps of an AMC episode, read off the model graph: one per prunable coupled channel group.

The original AMC listed the prunable layers of each architecture by hand in a YAML file (issues #64,
#244), and pruned a layer's channels without regard to the layers that must lose them too. Here a
step is a prunable :class:`~distiller.graph.coupling.ChannelGroup`: for a plain chain that is one
convolution's filters and the next layer's input channels; for a residual stage it is every
convolution that writes the stage's stream, its BatchNorms, and every layer that reads it. Any
model that ``torch.fx`` traces works, and the network an episode builds can always be thinned.

``--amc-prune-pattern`` chooses which side of a group the step acts on: ``filters`` (the producers'
filters) or ``channels`` (the consumers' input channels). Both remove the same coupled channels; the
pattern decides how the removal is applied (:mod:`distiller.amc.pruning`), which layer describes
the step in the observation (its *representative*), and the ``group_type`` of the schedule that
reproduces the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from distiller.amc.macs import Footprint, LayerCost, MacModel
from distiller.errors import ConfigError
from distiller.graph import build_graph
from distiller.graph.coupling import ChannelCoupling, ChannelGroup, channel_coupling
from distiller.graph.model_graph import GraphNode, ModelGraph
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = ["PATTERNS", "AMCNetwork", "StepSpec", "analyze_network"]

PATTERNS = ("filters", "channels")
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_LAYERS = (*_CONVS, nn.Linear)
# The ``type`` feature: what kind of layer represents a step.
LAYER_TYPES = {"conv": 0, "grouped_conv": 1, "linear": 2}


@dataclass(frozen=True)
class StepSpec:
    """One step of an episode and the static part of its observation.

    Attributes:
        index: the step number ``t``.
        group: the channel group's index in the model's :class:`ChannelCoupling`.
        layer: the representative layer (module name): the group's first producer convolution or
            Linear layer for ``filters``, its first consumer for ``channels``.
        tensor: the representative layer's weight (what the reproducing schedule lists).
        num_channels: channels of the group (what the action is a fraction of).
        kind: ``conv``, ``grouped_conv`` or ``linear`` (the representative's type).
        n: output channels of the representative layer (``weight.shape[0]``).
        c: its input channels.
        h: height of its input feature map (1 for Linear).
        w: width of its input feature map (1 for Linear).
        stride: its first stride (0 for Linear).
        k: its first kernel size (1 for Linear).
        macs: dense MACs of every layer the group occupies (what this step can shrink).
        weights: weight elements of those layers.
    """

    index: int
    group: int
    layer: str
    tensor: str
    num_channels: int
    kind: str
    n: int
    c: int
    h: int
    w: int
    stride: int
    k: int
    macs: int
    weights: int


@dataclass
class AMCNetwork:
    """What an AMC environment knows about a model's structure (built once, from the dense model)."""

    graph: ModelGraph
    coupling: ChannelCoupling
    steps: list[StepSpec]
    mac_model: MacModel
    pattern: str

    def group(self, step: int) -> ChannelGroup:
        return self.coupling.groups[self.steps[step].group]


def _first_call(graph: ModelGraph, layer: str) -> GraphNode | None:
    return next((n for n in graph.nodes.values() if n.kind == "module" and n.module_name == layer), None)


def _layer_costs(graph: ModelGraph, modules: dict[str, nn.Module]) -> list[LayerCost]:
    costs = []
    for node in graph.nodes.values():
        module = modules.get(node.module_name or "") if node.kind == "module" else None
        if isinstance(module, _LAYERS) and node.macs > 0:
            weight = module.weight
            costs.append(
                LayerCost(node.name, f"{node.module_name}.weight", node.macs, weight.shape[0], weight.shape[1])
            )
    return costs


def _footprints(group: ChannelGroup, costs: list[LayerCost]) -> tuple[Footprint, ...]:
    by_tensor: dict[str, list[int]] = {}
    for i, cost in enumerate(costs):
        by_tensor.setdefault(cost.tensor, []).append(i)
    found = []
    for member in group.members:
        if member.tensor not in by_tensor or member.dim not in (0, 1):
            continue
        per_channel = len(member.positions[0])
        if any(len(p) != per_channel for p in member.positions):
            raise ConfigError(
                f"AMC cannot count the MACs of {member.tensor}: the channels of its group occupy different numbers "
                "of its indices. Restrict the search to other layers with --amc-cfg."
            )
        found.extend(Footprint(i, member.dim, per_channel) for i in by_tensor[member.tensor])
    return tuple(found)


def _representative(group: ChannelGroup, pattern: str, modules: dict[str, nn.Module]) -> tuple[str, str] | None:
    role, dim = ("producer", 0) if pattern == "filters" else ("consumer", 1)
    for member in group.members:
        if member.role == role and member.dim == dim and member.tensor.endswith(".weight"):
            layer = member.tensor.removesuffix(".weight")
            if isinstance(modules.get(layer), _LAYERS):
                return layer, member.tensor
    return None


def _describe(
    index: int,
    group: ChannelGroup,
    rep: tuple[str, str],
    modules: dict[str, nn.Module],
    graph: ModelGraph,
    foot: tuple[Footprint, ...],
    costs: list[LayerCost],
) -> StepSpec:
    layer, tensor = rep
    module = modules[layer]
    node = _first_call(graph, layer)
    shape = node.input_shapes[0] if node is not None and node.input_shapes else None
    if isinstance(module, nn.Linear):
        kind, h, w, stride, k = "linear", 1, 1, 0, 1
    else:
        kind = "grouped_conv" if module.groups > 1 else "conv"
        spatial = tuple(shape[2:]) if shape is not None else ()
        h = int(spatial[0]) if spatial else 1
        w = int(spatial[1]) if len(spatial) > 1 else 1
        stride, k = int(module.stride[0]), int(module.kernel_size[0])
    touched = {fp.layer for fp in foot}
    weight = module.weight
    in_channels = weight.shape[1] * (module.groups if not isinstance(module, nn.Linear) else 1)
    return StepSpec(
        index=index,
        group=group.index,
        layer=layer,
        tensor=tensor,
        num_channels=group.num_channels,
        kind=kind,
        n=int(weight.shape[0]),
        c=int(in_channels),
        h=h,
        w=w,
        stride=stride,
        k=k,
        macs=sum(costs[i].macs for i in touched),
        weights=sum(modules[t.removesuffix(".weight")].weight.numel() for t in {costs[i].tensor for i in touched}),
    )


def _check_layers(wanted: Sequence[str], modules: dict[str, nn.Module]) -> set[str]:
    names = {normalize_module_name(n) for n in wanted}
    unknown = sorted(n for n in names if n not in modules)
    if unknown:
        raise ConfigError(
            f"--amc-cfg lists layers the model does not have: {', '.join(unknown)}."
            f"{did_you_mean(unknown[0], list(modules))} Use the layer names that "
            "'distiller classify --summary modules' shows."
        )
    return names


def analyze_network(
    model: nn.Module,
    *,
    pattern: str = "filters",
    dataset: str | None = None,
    example: torch.Tensor | None = None,
    layers: Sequence[str] | None = None,
) -> AMCNetwork:
    """Trace ``model`` and list the steps of an episode.

    Args:
        model: the dense model (it is traced, not changed).
        pattern: ``filters`` or ``channels`` (see the module docstring).
        dataset: the dataset whose input shape the graph is traced with (default: ``model.input_shape``).
        example: an example input batch instead of ``dataset``.
        layers: restrict the steps to groups in which one of these layers is the pattern's side
            (producer for ``filters``, consumer for ``channels``); ``None``: every prunable group.

    Raises:
        ConfigError: an unknown pattern or layer, or no step to take.
        GraphError: the model does not trace with ``torch.fx``.
    """
    if pattern not in PATTERNS:
        raise ConfigError(f"--amc-prune-pattern must be one of {', '.join(PATTERNS)}, got {pattern!r}.")
    graph = build_graph(model, dataset, example, allow_fallback=False)
    coupling = channel_coupling(graph)
    modules = {normalize_module_name(n): m for n, m in model.named_modules()}
    wanted = _check_layers(layers, modules) if layers is not None else None
    costs = _layer_costs(graph, modules)
    role = "producer" if pattern == "filters" else "consumer"
    steps: list[StepSpec] = []
    footprints: list[tuple[Footprint, ...]] = []
    for group in coupling.prunable:
        if group.num_channels < 2:
            continue
        if wanted is not None and not wanted & set(group.layers(role)):
            continue
        rep = _representative(group, pattern, modules)
        foot = _footprints(group, costs)
        if rep is None or not foot:
            continue
        steps.append(_describe(len(steps), group, rep, modules, graph, foot, costs))
        footprints.append(foot)
    if not steps:
        scope = f" among the --amc-cfg layers {sorted(wanted)}" if wanted is not None else ""
        raise ConfigError(
            f"AMC found no prunable channel group{scope} whose {role}s are convolution or Linear layers "
            f"(--amc-prune-pattern {pattern}). Groups:\n{coupling.describe()}"
        )
    return AMCNetwork(graph, coupling, steps, MacModel(tuple(costs), tuple(footprints)), pattern)
