"""When a sample leaves at an early exit: the decision rules, as pure tensor functions.

A sample takes the first exit whose *score* is below that exit's threshold; samples that no early
exit takes go on to the final classifier. Two scores:

* ``entropy`` (the default): the entropy of the exit's softmax, in nats. It needs no label, so the
  validation statistics describe exactly what a deployed model does, and
  :class:`~distiller.early_exit.inference.EarlyExitInference` uses this same function to stop.
  It lies in ``[0, ln C]`` for ``C`` classes (2.303 for 10 classes, 6.908 for 1000); a threshold
  of 0 lets nothing exit, a threshold above ``ln C`` lets everything exit at exit 0.
* ``ce``: the cross-entropy of the exit's logits against the sample's *label*, as the original
  Distiller decided. Kept for comparison with its published numbers, but it peeks at the label,
  so it overstates what exiting achieves and cannot run at inference time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from distiller.errors import ConfigError

__all__ = ["RULES", "check_rule", "confident", "exit_scores", "first_confident_exit", "softmax_entropy"]

RULES = ("entropy", "ce")
"""Decision rules: ``entropy`` (label-free, default) and ``ce`` (the original's, needs labels)."""


def check_rule(rule: str) -> str:
    """``rule`` if it is one of :data:`RULES`, else :class:`ConfigError` naming the flag."""
    if rule not in RULES:
        raise ConfigError(f"--earlyexit-rule {rule!r} is unknown: use one of {', '.join(RULES)}.")
    return rule


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of ``softmax(logits)`` per row; computed from log-softmax, so it never sees log(0)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(log_p.exp() * log_p).sum(dim=1)


def exit_scores(logits: torch.Tensor, rule: str = "entropy", target: torch.Tensor | None = None) -> torch.Tensor:
    """The per-sample score that the rule compares with a threshold (lower = more confident).

    Args:
        logits: ``(N, C)`` exit logits.
        rule: ``"entropy"`` or ``"ce"``.
        target: ``(N,)`` labels; required by ``"ce"``, ignored by ``"entropy"``.
    """
    if check_rule(rule) == "entropy":
        return softmax_entropy(logits)
    if target is None:
        raise ConfigError(
            "--earlyexit-rule ce decides by the loss against the label, so it needs labels; it cannot be used "
            "for inference. Use the default rule, entropy."
        )
    return F.cross_entropy(logits.float(), target, reduction="none")


def confident(
    logits: torch.Tensor, threshold: float, rule: str = "entropy", target: torch.Tensor | None = None
) -> torch.Tensor:
    """Boolean ``(N,)``: the samples this exit would take (score strictly below ``threshold``)."""
    return exit_scores(logits, rule, target) < threshold


def first_confident_exit(
    exit_logits: Sequence[torch.Tensor],
    thresholds: Sequence[float],
    rule: str = "entropy",
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Index of the exit each sample takes: the first confident early exit, else ``len(thresholds)`` (final).

    Args:
        exit_logits: the early exits' logits, earliest first (the final output may follow; it is ignored).
        thresholds: one per early exit.
        rule: see :data:`RULES`.
        target: labels, for the ``ce`` rule.

    Returns:
        ``(N,)`` long tensor of exit indices in ``[0, len(thresholds)]``.
    """
    num = len(thresholds)
    if len(exit_logits) < num:
        raise ConfigError(f"{num} thresholds were given for {len(exit_logits)} early exit(s); give one per exit.")
    taken = torch.full((exit_logits[0].shape[0],), num, dtype=torch.long, device=exit_logits[0].device)
    for index in reversed(range(num)):  # the earliest confident exit wins, so it is written last
        mask = confident(exit_logits[index], thresholds[index], rule, target)
        taken[mask] = index
    return taken
