"""Helpers shared by the thinning benchmarks (``thinning_coverage.py``, ``thinning_speedup.py``).

Not a package: the scripts import this module as ``_common`` (their own folder is on ``sys.path``
when they run as ``python benchmarks/<script>.py``).
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from distiller.graph import ModelGraph
from distiller.graph.coupling import ChannelCoupling, channel_coupling
from distiller.naming import normalize_module_name
from distiller.pruning.coupled import coupled_group_masks
from distiller.thinning.api import thin_model

CONV_LINEAR = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)

# torchvision classification models that do not take 224x224 inputs.
INPUT_SIZES = {"inception_v3": 299}


def torchvision_input(name: str, batch: int = 1, seed: int = 0) -> torch.Tensor:
    size = INPUT_SIZES.get(name, 224)
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def build_torchvision(name: str) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None).eval()


def randomize_norms(model: nn.Module, generator: torch.Generator) -> None:
    """Random BatchNorm statistics and random affine parameters of every normalization layer.

    Fresh BatchNorms (mean 0, var 1, gamma 1, beta 0) would hide folding mistakes: a removed
    channel then carries exactly zero.
    """
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, NORMS):
                continue
            if getattr(module, "running_mean", None) is not None:
                module.running_mean.normal_(generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
            if getattr(module, "weight", None) is not None:
                module.weight.normal_(generator=generator)
            if getattr(module, "bias", None) is not None:
                module.bias.normal_(generator=generator)


def randomize_constant_parameters(model: nn.Module, generator: torch.Generator) -> None:
    """Random values for parameters that hold one value (zero-initialized classifier heads and biases,
    ConvNeXt's 1e-6 layer scales, ViT's class token): with them the output hardly depends on the
    pruned channels (a zero head makes it zero), and the equivalence check would prove nothing."""
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() > 1 and bool((p == p.flatten()[0]).all()):
                std = 0.1 if p.numel() == p.shape[0] else p[0].numel() ** -0.5
                p.normal_(0.0, std, generator=generator)


def randomize(model: nn.Module, seed: int = 0) -> None:
    """:func:`randomize_norms` then :func:`randomize_constant_parameters`."""
    generator = torch.Generator().manual_seed(seed)
    randomize_norms(model, generator)
    randomize_constant_parameters(model, generator)


def canonical_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters by canonical name (what the coupling groups call their tensors)."""
    return {normalize_module_name(n): p.detach() for n, p in model.named_parameters()}


def coupled_masks(model: nn.Module, coupling: ChannelCoupling, fraction: float, criterion: str = "l1",
                  seed: int = 0) -> dict[str, torch.Tensor]:
    """``fraction`` of every prunable group masked in its producers' filters and consumers' channels."""
    generator = torch.Generator().manual_seed(seed)
    return coupled_group_masks(coupling.prunable, canonical_tensors(model), fraction, criterion=criterion,
                               generator=generator)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            mask = masks.get(normalize_module_name(name))
            if mask is not None:
                p.mul_(mask)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def final_classifiers(graph: ModelGraph) -> set[str]:
    """The conv/linear layers nearest the model output (the final classifier)."""
    found: set[str] = set()
    stack, seen = ["output"], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        node = graph.nodes[name]
        if node.kind == "module" and isinstance(graph.module(node), CONV_LINEAR):
            found.add(node.module_name)
        else:
            stack.extend(node.inputs)
    return found


def weight_layers(graph: ModelGraph) -> list[str]:
    """Conv/linear layers the forward uses (canonical names, each once, in graph order): called as
    modules, or with their weights read directly (Swin's attention calls ``F.linear(x, qkv.weight)``);
    ``nn.MultiheadAttention`` modules count too (their projections are parameters, not modules)."""
    modules = {normalize_module_name(n): m for n, m in graph.model.named_modules()}
    names = []
    for node in graph.nodes.values():
        if node.kind == "module":
            names.append(node.module_name)
        elif node.kind == "constant" and node.fx_node is not None:
            names.append(normalize_module_name(str(node.fx_node.target)).rpartition(".")[0])
    kinds = (*CONV_LINEAR, nn.MultiheadAttention)
    return [n for n in dict.fromkeys(names) if isinstance(modules.get(n), kinds)]


def reason_kind(reason: str) -> str:
    """A blocked-group reason without the layer it names: ``features.3.0.norm1 (LayerNorm) is not
    transparent ...`` -> ``LayerNorm is not transparent ...``."""
    match = re.match(r"^[\w.#]+ \((\w+)\) (.*)$", reason)
    return f"{match[1]} {match[2]}" if match else reason


@dataclass
class ThinningCheck:
    """The result of masking every prunable group and thinning (see :func:`check_thinning`)."""

    groups: int = 0
    prunable: int = 0
    pruned_groups: int = 0
    layers: int = 0  # conv/linear layers, final classifier excepted
    covered: int = 0  # of those, members of a group that lost channels (depthwise convs: passive members)
    covered_strict: int = 0  # of those, producers or consumers of a group that lost channels
    coverage: float = 0.0
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    max_rel_error: float = math.nan
    removed_channels: int = 0
    approximate: list[str] = field(default_factory=list)
    kept_reasons: dict[str, int] = field(default_factory=dict)
    blocked_reasons: dict[str, int] = field(default_factory=dict)  # reason -> groups blocked by it
    uncovered: list[str] = field(default_factory=list)
    uncovered_types: dict[str, int] = field(default_factory=dict)
    classifier: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def param_reduction(self) -> float:
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    def failures(self, min_coverage: float, min_param_reduction: float, tolerance: float) -> list[str]:
        """Why the check fails the acceptance criteria (empty when it passes)."""
        out = []
        if self.coverage < min_coverage:
            kinds: dict[str, int] = {}
            for reason, n in self.blocked_reasons.items():
                if reason != "reaches the model output":  # the classifier's outputs, never pruned
                    kinds[reason_kind(reason)] = kinds.get(reason_kind(reason), 0) + n
            missing = ", ".join(f"{n} {t}" for t, n in self.uncovered_types.items())
            blocked = "; ".join(f"{r} ({n} groups)" for r, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
            out.append(f"coverage {self.coverage:.0%} < {min_coverage:.0%} (unpruned: {missing})"
                       + (f"; blocked by: {blocked}" if blocked else ""))
        if self.param_reduction < min_param_reduction:
            out.append(f"params -{self.param_reduction:.0%} < -{min_param_reduction:.0%}")
        if not self.max_rel_error <= tolerance:
            out.append(f"output differs: max rel error {self.max_rel_error:.2e} > {tolerance:.0e}")
        if self.kept_reasons:
            out.append("masked channels kept: " + "; ".join(f"{r} ({n})" for r, n in self.kept_reasons.items()))
        return out

    def as_dict(self) -> dict:
        return {**asdict(self), "param_reduction": self.param_reduction}


def check_thinning(model: nn.Module, example: torch.Tensor, fraction: float = 0.5, criterion: str = "l1",
                   seed: int = 0) -> ThinningCheck:
    """Randomize the norms of ``model`` (eval mode), mask ``fraction`` of every prunable coupled group,
    thin in place, and compare the thinned model's output with the masked model's on a fresh input."""
    result = ThinningCheck()
    clock = time.perf_counter
    model.eval()
    randomize(model, seed)
    start = clock()
    graph = ModelGraph(model, example[:1], allow_fallback=False)
    result.seconds["graph"] = clock() - start
    start = clock()
    coupling = channel_coupling(graph)
    result.seconds["coupling"] = clock() - start
    result.groups, result.prunable = len(coupling.groups), len(coupling.prunable)
    blocked: dict[str, int] = {}
    for group in coupling.groups:
        if group.blocked is not None:
            blocked[group.blocked] = blocked.get(group.blocked, 0) + 1
    result.blocked_reasons = blocked
    result.params_before, result.macs_before = count_params(model), graph.total_macs

    masks = coupled_masks(model, coupling, fraction, criterion, seed)
    apply_masks(model, masks)
    evaluation = torch.randn(example.shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.inference_mode():
        reference = model(evaluation)
    start = clock()
    report = thin_model(model, masks, example=example)
    result.seconds["thin"] = clock() - start
    with torch.inference_mode():
        output = model(evaluation)
    scale = float(reference.abs().max())
    result.max_rel_error = float((output - reference).abs().max()) / scale if scale > 0 else math.nan
    result.params_after = count_params(model)
    result.macs_after = ModelGraph(model, example[:1], allow_fallback=False).total_macs
    result.removed_channels = report.num_removed
    result.pruned_groups = len(report.removed)
    result.approximate = list(report.approximate)
    result.kept_reasons = dict(report.kept_reasons)

    classifier = final_classifiers(graph)
    layers = [n for n in weight_layers(graph) if n not in classifier]
    touched: set[str] = set()
    strict: set[str] = set()
    for index in report.removed:
        group = coupling.groups[index]
        touched.update(m.layer for m in group.members)
        strict.update(m.layer for m in group.members if m.role in ("producer", "consumer"))
    result.classifier = sorted(classifier)
    result.layers = len(layers)
    result.covered = sum(1 for n in layers if n in touched)
    result.covered_strict = sum(1 for n in layers if n in strict)
    result.coverage = result.covered / result.layers if layers else 0.0
    result.uncovered = [n for n in layers if n not in touched]
    modules = {normalize_module_name(n): m for n, m in model.named_modules()}
    for n in result.uncovered:
        kind = type(modules[n]).__name__
        result.uncovered_types[kind] = result.uncovered_types.get(kind, 0) + 1
    return result


def median_latency(model: nn.Module, x: torch.Tensor, warmup: int, runs: int) -> float:
    """Median seconds of ``runs`` forward passes (after ``warmup``), under ``torch.inference_mode``."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def torch_pruning_prune(model: nn.Module, example: torch.Tensor, ignored: list[nn.Module],
                        ratio: float = 0.5) -> None:
    """Torch-Pruning's L1 magnitude pruner, ``ratio`` of the channels of every layer (not global),
    following Torch-Pruning's own torchvision recipe: attention output projections are left alone,
    ViT channels are rounded to the number of heads and ``hidden_dim`` is updated afterwards."""
    import torch_pruning as tp
    from torchvision.models.vision_transformer import VisionTransformer

    attention_outputs = nn.modules.linear.NonDynamicallyQuantizableLinear
    ignored = list(ignored) + [m for m in model.modules() if isinstance(m, attention_outputs)]
    round_to = model.encoder.layers[0].num_heads if isinstance(model, VisionTransformer) else None
    pruner = tp.pruner.MetaPruner(model, example, importance=tp.importance.MagnitudeImportance(p=1),
                                  pruning_ratio=ratio, ignored_layers=ignored, global_pruning=False,
                                  round_to=round_to)
    pruner.step()
    if isinstance(model, VisionTransformer):
        model.hidden_dim = model.conv_proj.out_channels
