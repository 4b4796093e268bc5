"""Deriving a :class:`ThinningPlan` from masks (or exact zeros) and the model's channel groups.

A channel of a group can go when

* every *consumer* slice of it is masked (channel pruning): nothing reads it, so its value does not
  matter; or
* every *producer* filter of it is masked (filter pruning): it then carries a constant (e.g. a
  BatchNorm's ``beta - gamma * mean / std`` through the activation), which is measured on an example
  batch and folded into each consumer's bias, or into the running mean of the BatchNorm that follows
  a bias-free consumer. The fold is exact for Linear layers and unpadded convolutions; a zero-padded
  convolution sees the constant only inside its borders, so the fold is exact away from them (the
  plan's report lists these layers).

Removing every channel of a group is refused: the layers would have nothing left to compute.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from distiller.errors import ModelError
from distiller.graph.coupling import ChannelCoupling, ChannelGroup, channel_coupling
from distiller.graph.model_graph import ModelGraph
from distiller.naming import normalize_module_name
from distiller.thinning.plan import TensorShift, ThinningPlan

MODES = ("filters", "channels", "both")


@dataclass
class ThinningReport:
    """What :func:`plan_from_masks` decided."""

    plan: ThinningPlan
    removed: dict[int, list[int]] = field(default_factory=dict)  # group index -> removed channels
    folded: list[str] = field(default_factory=list)  # tensors that received folded constants
    approximate: list[str] = field(default_factory=list)  # padded convolutions folded exactly only inside
    kept_reasons: dict[str, int] = field(default_factory=dict)  # why masked channels stayed -> count

    @property
    def num_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())


def _masked_tensors(model: nn.Module, masks: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
    """Parameters and buffers by canonical name, with masks applied (exact zeros count as masked)."""
    tensors = {normalize_module_name(n): t.detach() for n, t in model.named_parameters()}
    tensors.update({normalize_module_name(n): t.detach() for n, t in model.named_buffers()})
    for name, value in (masks or {}).items():
        mask = getattr(value, "mask", value)
        key = normalize_module_name(name)
        if isinstance(mask, torch.Tensor) and key in tensors and mask.shape == tensors[key].shape:
            tensors[key] = tensors[key] * mask.to(tensors[key].dtype)
    return tensors


def _consumer_inputs(model: nn.Module, layers: set[str], example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input each layer in ``layers`` receives when ``model`` runs on ``example`` (eval mode)."""
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for raw, module in model.named_modules():
        name = normalize_module_name(raw)
        if name in layers:
            handles.append(
                module.register_forward_pre_hook(lambda m, args, n=name: captured.setdefault(n, args[0].detach()))
            )
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        for m, mode in training.items():
            m.training = mode
    return captured


def _constants(x: torch.Tensor, dim: int, positions: list[int]) -> torch.Tensor | None:
    """The constant value of each of ``positions`` along ``dim`` of ``x``, or None if one varies."""
    moved = x.movedim(dim, -1).reshape(-1, x.shape[dim])[:, positions]
    low, high = moved.amin(0), moved.amax(0)
    if bool(((high - low).abs() > 1e-6 * (1 + high.abs())).any()):
        return None
    return moved[0]


def _consumer_response(module: nn.Module, dim_positions: list[int], values: torch.Tensor) -> torch.Tensor:
    """How much each output of ``module`` moves when its inputs ``dim_positions`` (weight dim 1)
    hold ``values`` instead of 0, away from any padding."""
    weight = module.weight.detach()
    if isinstance(module, nn.Linear):
        return weight[:, dim_positions] @ values.to(weight.dtype)
    groups = module.groups
    in_per = weight.shape[1]
    spatial = weight.shape[2:]
    dilation = module.dilation
    extent = [d * (k - 1) + 1 for d, k in zip(dilation, spatial)]
    x = torch.zeros((1, in_per * groups, *extent), dtype=weight.dtype, device=weight.device)
    for g in range(groups):
        for p, v in zip(dim_positions, values.tolist()):
            x[0, g * in_per + p] = v
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(spatial)]
    return conv(x, weight, None, 1, 0, dilation, groups).reshape(-1)


def _fold_target(graph: ModelGraph, layer: str, module: nn.Module) -> tuple[str, float] | None:
    """(tensor, sign) that absorbs a constant added to ``layer``'s output: its bias, or the running
    mean of a BatchNorm that alone reads a bias-free layer's output."""
    if getattr(module, "bias", None) is not None:
        return f"{layer}.bias", 1.0
    followers = graph.successors(layer)
    if len(followers) == 1:
        node = graph[followers[0]]
        if node.op_type.startswith("BatchNorm") and len(node.inputs) == 1:
            bn = graph.module(node)
            if getattr(bn, "running_mean", None) is not None:
                return f"{node.module_name}.running_mean", -1.0
    return None


class _Folder:
    """Accumulates the constants of filter-pruned channels into the consumers' fold targets."""

    def __init__(
        self,
        graph: ModelGraph,
        model: nn.Module,
        tensors: Mapping[str, torch.Tensor],
        example: torch.Tensor | None,
    ) -> None:
        self.graph = graph
        self.model = model
        self.tensors = tensors
        self.example = example
        self.inputs: dict[str, torch.Tensor] | None = None
        self.shifts: dict[str, torch.Tensor] = {}
        self.approximate: set[str] = set()

    def capture(self, layers: set[str]) -> None:
        """Record the inputs of ``layers`` on the masked model (once, for every group to fold)."""
        if not layers:
            return
        masked = copy.deepcopy(self.model)
        with torch.no_grad():
            for name, p in [*masked.named_parameters(), *masked.named_buffers()]:
                key = normalize_module_name(name)
                if key in self.tensors:
                    p.copy_(self.tensors[key])
        example = self.example
        if example is None:
            example = self.graph.example_input.repeat(2, *[1] * (self.graph.example_input.dim() - 1))
            example = example + torch.randn_like(example)
        self.inputs = _consumer_inputs(masked, layers, example)

    def fold(self, group: ChannelGroup, channels: list[int]) -> str | None:
        """Fold ``channels`` of ``group`` into its consumers; returns why not, or None when done."""
        consumers = group.consumers
        if self.inputs is None or any(m.layer not in self.inputs for m in consumers):
            self.capture({m.layer for m in consumers} | set(self.inputs or {}))
        planned: list[tuple[str, torch.Tensor, str | None]] = []
        for member in consumers:
            module = self.graph.model.get_submodule(self.graph._raw_module_name(member.layer))
            x = self.inputs[member.layer]
            dim = -1 if isinstance(module, nn.Linear) else 1
            in_per = module.weight.shape[1]
            positions = [p for c in channels for p in member.positions[c]]
            groups = getattr(module, "groups", 1)
            absolute = [g * in_per + p for g in range(groups) for p in positions]
            values = _constants(x, dim, absolute)
            if values is None:
                return "a removed channel does not carry a constant"
            values = values.reshape(groups, len(positions)) if groups > 1 else values.reshape(1, -1)
            if not bool(values.any()):
                continue
            if groups > 1 and not torch.equal(values, values[:1].expand_as(values)):
                return "a grouped convolution reads different constants per group"
            target = _fold_target(self.graph, member.layer, module)
            if target is None:
                return f"{member.layer} has no bias or following BatchNorm to fold a constant into"
            delta = _consumer_response(module, positions, values[0])
            padded = not isinstance(module, nn.Linear) and any(p != 0 for p in _padding(module))
            planned.append((target[0], target[1] * delta, member.layer if padded else None))
        for tensor, delta, padded_layer in planned:
            self.shifts[tensor] = self.shifts.get(tensor, torch.zeros_like(delta)) + delta
            if padded_layer:
                self.approximate.add(padded_layer)
        return None


def _padding(module: nn.Module) -> tuple[int, ...]:
    padding = module.padding
    if isinstance(padding, str):
        return (0,) if padding == "valid" else (1,)
    return tuple(padding)


def plan_from_masks(
    graph: ModelGraph,
    masks: Mapping[str, Any] | None = None,
    *,
    mode: str = "both",
    coupling: ChannelCoupling | None = None,
    example: torch.Tensor | None = None,
) -> ThinningReport:
    """The plan that removes every removable masked channel of ``graph.model`` (see module docstring).

    Args:
        graph: the model's graph (:class:`ModelGraph`); its model holds the weights.
        masks: {parameter name: mask tensor or masker}; without masks, exact zeros count as masked.
        mode: ``filters`` (producer filters masked), ``channels`` (consumer channels masked) or ``both``.
        coupling: precomputed channel groups of ``graph`` (computed when None).
        example: the batch on which folded constants are measured (default: the graph's example
            input plus noise, batch of 2).

    Raises:
        ModelError: every channel of a group is masked, or ``mode`` is unknown.
    """
    if mode not in MODES:
        raise ModelError(f"Unknown thinning mode {mode!r}; use one of {', '.join(MODES)}.")
    coupling = coupling or channel_coupling(graph)
    tensors = _masked_tensors(graph.model, masks)
    folder = _Folder(graph, graph.model, tensors, example)
    report = ThinningReport(ThinningPlan())
    removed_positions: dict[tuple[str, int], set[int]] = {}
    sizes: dict[tuple[str, int], int] = {}
    decisions = []
    for group in coupling.prunable:
        unread = group.zero_channels(tensors, "consumer") if mode != "filters" else torch.zeros(0, dtype=torch.bool)
        unmade = group.zero_channels(tensors, "producer") if mode != "channels" else torch.zeros(0, dtype=torch.bool)
        by_consumers = unread.nonzero().flatten().tolist() if unread.numel() else []
        by_producers = [
            c
            for c in (unmade.nonzero().flatten().tolist() if unmade.numel() else [])
            if not (unread.numel() and unread[c])
        ]
        decisions.append((group, by_consumers, by_producers))
    folder.capture({m.layer for group, _, made in decisions if made for m in group.consumers})
    for group, by_consumers, by_producers in decisions:
        if by_producers:
            reason = folder.fold(group, by_producers)
            if reason is not None:
                report.kept_reasons[reason] = report.kept_reasons.get(reason, 0) + len(by_producers)
                by_producers = []
        removed = sorted(by_consumers + by_producers)
        if not removed:
            continue
        if len(removed) == group.num_channels:
            raise ModelError(
                f"Thinning would remove all {group.num_channels} channels of {', '.join(group.layers('producer'))}: "
                "every filter (or every input channel) of these layers is masked. Lower the sparsity of this "
                "group, or remove the layers from the model instead."
            )
        report.removed[group.index] = removed
        for member in group.members:
            key = (member.tensor, member.dim)
            sizes[key] = int(tensors[member.tensor].shape[member.dim]) if member.tensor in tensors else 0
            removed_positions.setdefault(key, set()).update(p for c in removed for p in member.positions[c])
    plan = report.plan
    for tensor, delta in folder.shifts.items():
        plan.shifts.append(TensorShift(tensor, tuple(float(v) for v in delta.tolist())))
    report.folded = list(folder.shifts)
    report.approximate = sorted(folder.approximate)
    for (tensor, dim), positions in removed_positions.items():
        keep = [i for i in range(sizes[(tensor, dim)]) if i not in positions]
        plan.add(tensor, dim, keep)
    return report
