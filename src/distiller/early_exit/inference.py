"""Inference that really stops at the first confident exit (batch size 1).

The simulation (:mod:`~distiller.early_exit.stats`) runs every layer and only *counts* where samples
would have left. :class:`EarlyExitInference` saves the work: when an exit's branch is confident, the
branch point raises an internal exception that unwinds the rest of the forward pass at once, and the
wrapper returns that exit's logits. An exception is the one way to leave an arbitrary ``forward``
from inside a module hook without editing the model's code; the layers after the exit never run.

The decision is :func:`~distiller.early_exit.decision.confident` with the label-free entropy rule, the
same function the simulation uses, so the simulated share of each exit is what this wrapper achieves
(up to float rounding: a batch of one can differ from a large batch in the last bits of a convolution,
which matters only for a sample whose entropy lies on its threshold).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distiller.early_exit.branch import exit_state, num_exits, observe_exits
from distiller.early_exit.decision import check_rule, confident
from distiller.errors import ConfigError

__all__ = ["EarlyExitInference"]


class _ExitTaken(Exception):  # noqa: N818 - control flow, never seen by users
    """Raised from a branch point to abandon the forward pass; carries the exit's logits."""

    def __init__(self, index: int, logits: torch.Tensor) -> None:
        super().__init__(index)
        self.index = index
        self.logits = logits


class EarlyExitInference(nn.Module):
    """Wrap a model with exits so that a forward pass stops at the first confident exit.

    Args:
        model: a model with exits (a ``*_earlyexit`` architecture or
            :func:`~distiller.early_exit.branch.attach_exits`); evaluate it in eval mode.
        thresholds: entropy thresholds in nats, one per early exit (``--earlyexit_thresholds``).
        rule: only ``"entropy"``: the original's ``"ce"`` rule needs the label, unknown at inference.

    Attributes:
        last_exit: the exit the last call stopped at (``len(thresholds)`` = the final classifier).
        exits_taken: how many calls stopped at each exit, final last.
    """

    def __init__(self, model: nn.Module, thresholds: Sequence[float], rule: str = "entropy") -> None:
        super().__init__()
        if check_rule(rule) != "entropy":
            raise ConfigError(
                f"EarlyExitInference cannot use the {rule!r} rule: it compares the exit's loss with the label, "
                "which a deployed model does not have. Use rule='entropy'."
            )
        n = num_exits(model)
        if n == 0:
            raise ConfigError("EarlyExitInference needs a model with early exits; attach them with attach_exits().")
        if len(thresholds) != n:
            raise ConfigError(
                f"--earlyexit_thresholds has {len(thresholds)} value(s) but the model has {n} early exit(s); "
                f"give exactly {n}."
            )
        self.model = model
        self.thresholds = tuple(float(t) for t in thresholds)
        self.rule = rule
        self.last_exit: int | None = None
        self.exits_taken = [0] * (n + 1)

    def _gate(self, index: int, logits: torch.Tensor) -> None:
        if bool(confident(logits, self.thresholds[index], self.rule)[0]):
            raise _ExitTaken(index, logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the exit that took ``x`` (a batch of one sample)."""
        if x.shape[0] != 1:
            raise ConfigError(
                f"EarlyExitInference decides per sample, so it takes batches of one; got a batch of {x.shape[0]}. "
                "Use the simulation (validation with --earlyexit_thresholds) for batched statistics."
            )
        try:
            with observe_exits(self.model, self._gate):
                outputs = self.model(x)
        except _ExitTaken as taken:
            index, logits = taken.index, taken.logits
            exit_state(self.model).clear()  # the abandoned pass never reached the model's own clean-up
        else:
            index, logits = len(self.thresholds), outputs[-1]
        self.last_exit = index
        self.exits_taken[index] += 1
        return logits

    def extra_repr(self) -> str:
        return f"thresholds={list(self.thresholds)}, rule={self.rule!r}"
