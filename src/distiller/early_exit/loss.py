"""The training loss of a model with early exits (BranchyNet, Teerapittayanon et al. 2016).

``loss = sum_i w_i * CE(exit_i) + (1 - sum_i w_i) * CE(final)``

Every exit learns from the labels at once; the weights trade the early exits' accuracy against the
final classifier's (the original used ``--earlyexit_lossweights 0.3`` for one exit). The weights must
sum to less than 1, so the final classifier keeps a positive share.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from distiller.errors import ConfigError

__all__ = ["EarlyExitCriterion", "check_loss_weights", "earlyexit_loss", "final_output"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_loss_weights(weights: Sequence[float], num_exits: int | None = None) -> tuple[float, ...]:
    """The weights as a tuple, or :class:`ConfigError` naming ``--earlyexit_lossweights`` and the fix.

    Args:
        weights: one weight per early exit, each in ``[0, 1)``, summing to less than 1.
        num_exits: the model's number of early exits, when known.
    """
    values = tuple(float(w) for w in weights)
    if not values:
        raise ConfigError("--earlyexit_lossweights is empty: give one weight per early exit, e.g. 0.3.")
    if num_exits is not None and len(values) != num_exits:
        raise ConfigError(
            f"--earlyexit_lossweights has {len(values)} value(s) but the model has {num_exits} early exit(s); "
            f"give exactly {num_exits}."
        )
    if any(not math.isfinite(w) or w < 0 for w in values):
        raise ConfigError(f"--earlyexit_lossweights {list(values)}: weights must be finite and >= 0.")
    if sum(values) >= 1.0:
        raise ConfigError(
            f"--earlyexit_lossweights {list(values)} sum to {sum(values):.4g}; they must sum to less than 1, "
            "since the final classifier gets 1 - sum(weights)."
        )
    return values


def final_output(output: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The final classifier's logits of a model's output (``output[-1]`` for a model with exits)."""
    return output[-1] if isinstance(output, list | tuple) else output


def earlyexit_loss(
    outputs: Sequence[torch.Tensor],
    target: torch.Tensor,
    weights: Sequence[float],
    criterion: Loss = F.cross_entropy,
) -> torch.Tensor:
    """``sum_i weights[i] * criterion(outputs[i]) + (1 - sum(weights)) * criterion(outputs[-1])``.

    Args:
        outputs: ``[exit_0, ..., final]`` logits, as a model with exits returns them.
        target: labels.
        weights: one per early exit (``len(outputs) - 1``).
        criterion: the per-output loss (mean cross-entropy by default).
    """
    if not isinstance(outputs, list | tuple):
        raise ConfigError(
            "--earlyexit_lossweights applies to models with early exits, whose forward returns a list; this "
            "model returned one tensor. Use a *_earlyexit architecture or attach_exits(model, exits_def)."
        )
    weights = check_loss_weights(weights, len(outputs) - 1)
    loss = (1.0 - sum(weights)) * criterion(outputs[-1], target)
    for weight, logits in zip(weights, outputs[:-1]):
        loss = loss + weight * criterion(logits, target)
    return loss


class EarlyExitCriterion(nn.Module):
    """:func:`earlyexit_loss` as a criterion module: ``criterion(model(x), y)`` for a model with exits.

    Args:
        weights: one loss weight per early exit (``--earlyexit_lossweights``).
        base: the per-output loss; cross-entropy by default.
    """

    def __init__(self, weights: Sequence[float], base: nn.Module | None = None) -> None:
        super().__init__()
        self.weights = check_loss_weights(weights)
        self.base = base if base is not None else nn.CrossEntropyLoss()

    def forward(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return earlyexit_loss(outputs, target, self.weights, self.base)

    def extra_repr(self) -> str:
        return f"weights={list(self.weights)}, final={1.0 - sum(self.weights):.4g}"
