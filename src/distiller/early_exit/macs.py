"""What each exit costs: MACs per sample of running the network up to and including an exit.

The costs are counted with forward hooks on one batch-1 forward pass (not from a traced graph:
``torch.fx`` does not run the hooks that compute the exits). Every convolution and Linear layer adds
its MACs, by the formulas of :mod:`distiller.graph.macs` (the ``--summary compute`` conventions:
biases, BatchNorm, pooling and activations are free). The counter is read right after each exit's
branch has run, so exit ``i`` costs every layer the forward pass ran before it, *including the
branches of the earlier exits*: exactly what
:class:`~distiller.early_exit.inference.EarlyExitInference` computes before it stops at exit ``i``.
The final exit costs the whole model with all its branches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distiller.early_exit.branch import EXITS_ATTRIBUTE, exit_state, observe_exits
from distiller.errors import ConfigError
from distiller.graph.macs import module_macs

__all__ = ["ExitCosts", "exit_macs"]


@dataclass(frozen=True)
class ExitCosts:
    """MACs per sample.

    Attributes:
        cumulative: up to and including each exit, the final classifier last (the whole model).
        branches: of each early exit's branch alone.
        backbone: of the model without its exits.
    """

    cumulative: tuple[int, ...]
    branches: tuple[int, ...]
    backbone: int


@torch.no_grad()
def exit_macs(model: nn.Module, example_input: torch.Tensor) -> ExitCosts:
    """Count the MACs of ``model``'s exits on one sample of ``example_input``'s shape (run in eval mode).

    Args:
        model: a model with exits (:func:`~distiller.early_exit.branch.attach_exits`).
        example_input: a batch; only its first sample is used.
    """
    state = exit_state(model)
    if state is None:
        raise ConfigError("The model has no early exits; attach them first with attach_exits(model, exits_def).")
    branch_of = {id(m): i for i, branch in enumerate(getattr(model, EXITS_ATTRIBUTE)) for m in branch.modules()}
    total = [0]
    branch_macs = [0] * len(state.names)
    cumulative: list[int] = []

    def count(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            return
        macs = module_macs(module, tuple(args[0].shape), tuple(output.shape))
        total[0] += macs
        if id(module) in branch_of:
            branch_macs[branch_of[id(module)]] += macs

    handles = [
        m.register_forward_hook(count)
        for m in model.modules()
        if not list(m.children())  # leaf layers only
    ]
    training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with observe_exits(model, lambda index, logits: cumulative.append(total[0])):
            model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        for m, mode in training.items():
            m.training = mode
    cumulative.append(total[0])
    return ExitCosts(tuple(cumulative), tuple(branch_macs), total[0] - sum(branch_macs))
