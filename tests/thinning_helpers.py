"""Shared by the graph and thinning tests: randomized BatchNorm, coupled masks, equivalence checks."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distiller.graph import ModelGraph, build_graph
from distiller.graph.coupling import channel_coupling
from distiller.pruning.coupled import coupled_group_masks
from distiller.thinning import thin_model


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Fresh BatchNorm (mean 0, var 1, gamma 1, beta 0) hides folding and slicing bugs; randomize it."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(generator=generator)
                m.running_var.uniform_(0.5, 2.0, generator=generator)
                m.weight.normal_(generator=generator)
                m.bias.normal_(generator=generator)


@dataclass
class Thinned:
    reference: torch.Tensor
    output: torch.Tensor
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    report: object

    @property
    def relative_error(self) -> float:
        return float((self.output - self.reference).abs().max() / self.reference.abs().max())


def mask_and_thin(
    model: nn.Module,
    x: torch.Tensor,
    *,
    fraction: float = 0.5,
    seed: int = 0,
    roles=("producer", "consumer"),
    criterion: str = "random",
) -> Thinned:
    """Randomize BN, mask ``fraction`` of every coupled group, thin, and compare outputs on ``x``."""
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    randomize_batchnorm(model, generator)
    graph = build_graph(model, example=x[:1])
    coupling = channel_coupling(graph)
    tensors = {k: v.detach() for k, v in model.named_parameters()}
    masks = coupled_group_masks(
        coupling.prunable, tensors, fraction, criterion=criterion, roles=roles, generator=generator
    )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])
        reference = model(x)
    params_before = sum(p.numel() for p in model.parameters())
    report = thin_model(model, masks, example=x)
    with torch.no_grad():
        output = model(x)
    return Thinned(
        reference,
        output,
        params_before,
        sum(p.numel() for p in model.parameters()),
        graph.total_macs,
        ModelGraph(model, x[:1]).total_macs,
        report,
    )
