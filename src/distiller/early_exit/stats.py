"""Simulated early exiting over a dataset: which exit each sample takes, and what that is worth.

A model with exits computes every exit on every sample; the simulation then decides, per sample,
which exit a deployed model would have stopped at (:mod:`~distiller.early_exit.decision`) and scores
each sample by the logits of that exit only. Reported, as the original's ``earlyexit_validate_stats``:

* per exit: top-1 / top-5 accuracy over the samples that took it, and the share of samples it took;
* totals: the accuracy of the network with early exiting, which equals the per-exit accuracies
  weighted by the share each exit took (the original's "Totals for entire network with early exits");
* with the MACs of each exit (:mod:`~distiller.early_exit.macs`), the average MACs per sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from distiller.early_exit.decision import check_rule, first_confident_exit

__all__ = ["EarlyExitStats", "ExitSimulation", "ExitStats", "format_stats", "topk_hits"]


def topk_hits(logits: torch.Tensor, target: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean ``(N,)``: the label is among the ``k`` highest logits (``k`` capped at the class count)."""
    k = min(k, logits.shape[1])
    return logits.topk(k, dim=1).indices.eq(target.view(-1, 1)).any(dim=1)


@dataclass(frozen=True)
class ExitStats:
    """One exit's share of the samples and its accuracy on them.

    Attributes:
        index: exit number (the final classifier is the last).
        taken: samples that left the network here.
        percent: ``taken`` as a percentage of all samples.
        top1, top5: accuracy (percent) over the samples that took this exit; 0 when none did.
        loss: mean cross-entropy of this exit over *all* samples.
        macs: MACs per sample of running the network up to and including this exit, if known.
    """

    index: int
    taken: int
    percent: float
    top1: float
    top5: float
    loss: float
    macs: int | None = None


@dataclass(frozen=True)
class EarlyExitStats:
    """The simulation's result over a dataset.

    Attributes:
        exits: per exit, the final classifier last.
        num_samples: samples seen.
        top1, top5: accuracy (percent) of the network with early exiting (weighted totals).
        thresholds, rule: the decision that was simulated.
        average_macs: MACs per sample averaged over the exits taken, if the exits' MACs are known.
        backbone_macs: MACs per sample of the model without exits, if known.
    """

    exits: tuple[ExitStats, ...]
    num_samples: int
    top1: float
    top5: float
    thresholds: tuple[float, ...]
    rule: str
    average_macs: float | None = None
    backbone_macs: int | None = None

    @property
    def final_loss(self) -> float:
        """Mean cross-entropy of the final classifier (the loss the original reported)."""
        return self.exits[-1].loss


class ExitSimulation:
    """Accumulates the simulated exits over minibatches.

    Args:
        thresholds: one per early exit.
        rule: ``"entropy"`` (default) or ``"ce"``; see :mod:`~distiller.early_exit.decision`.
    """

    def __init__(self, thresholds: Sequence[float], rule: str = "entropy") -> None:
        self.thresholds = tuple(float(t) for t in thresholds)
        self.rule = check_rule(rule)
        n = len(self.thresholds) + 1
        self.taken = [0] * n
        self.correct1 = [0] * n
        self.correct5 = [0] * n
        self.loss_sum = [0.0] * n
        self.count = 0

    @torch.no_grad()
    def update(self, outputs: Sequence[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Add one minibatch of ``[exit_0, ..., final]`` logits; returns the exit each sample took."""
        taken = first_confident_exit(outputs, self.thresholds, self.rule, target)
        for index, logits in enumerate(outputs):
            self.loss_sum[index] += float(F.cross_entropy(logits.float(), target, reduction="sum"))
            mine = taken == index
            self.taken[index] += int(mine.sum())
            self.correct1[index] += int((topk_hits(logits, target, 1) & mine).sum())
            self.correct5[index] += int((topk_hits(logits, target, 5) & mine).sum())
        self.count += target.numel()
        return taken

    def running_top(self) -> tuple[float, float]:
        """Current (top-1, top-5) of the network with early exiting."""
        if not self.count:
            return 0.0, 0.0
        return 100.0 * sum(self.correct1) / self.count, 100.0 * sum(self.correct5) / self.count

    @property
    def final_loss(self) -> float:
        return self.loss_sum[-1] / self.count if self.count else 0.0

    def result(self, exit_macs: Sequence[int] | None = None, backbone_macs: int | None = None) -> EarlyExitStats:
        """The statistics so far.

        Args:
            exit_macs: MACs per sample up to and including each exit (final last), for the average cost.
            backbone_macs: MACs per sample of the model without exits, for comparison.
        """
        n = self.count

        def pct(part: int, whole: int) -> float:
            return 100.0 * part / whole if whole else 0.0

        exits = tuple(
            ExitStats(
                index=i,
                taken=self.taken[i],
                percent=pct(self.taken[i], n),
                top1=pct(self.correct1[i], self.taken[i]),
                top5=pct(self.correct5[i], self.taken[i]),
                loss=self.loss_sum[i] / n if n else 0.0,
                macs=int(exit_macs[i]) if exit_macs is not None else None,
            )
            for i in range(len(self.taken))
        )
        average = None
        if exit_macs is not None and n:
            average = sum(self.taken[i] * exit_macs[i] for i in range(len(self.taken))) / n
        top1, top5 = self.running_top()
        return EarlyExitStats(exits, n, top1, top5, self.thresholds, self.rule, average, backbone_macs)


def format_stats(stats: EarlyExitStats) -> list[str]:
    """The report lines, in the style of the original's (``Exit 0: Top1 ... Top5 ... taken ...%``).

    They contain ``Top1``, so a CLI must print them before its final result line.
    """
    last = len(stats.exits) - 1
    lines = [f"Early exit ({stats.rule} rule, thresholds {list(stats.thresholds)}), {stats.num_samples} samples:"]
    for e in stats.exits:
        label = f"Exit {e.index}" + (" (final)" if e.index == last else "")
        line = f"{label}: Top1 {e.top1:.3f}   Top5 {e.top5:.3f}   taken {e.percent:.3f}% ({e.taken})"
        if e.macs is not None:
            line += f"   MACs {e.macs:,}"
        lines.append(line)
    lines.append(f"Totals with early exits: Top1 {stats.top1:.3f}   Top5 {stats.top5:.3f}")
    if stats.average_macs is not None:
        line = f"Average MACs/sample: {stats.average_macs:,.0f}"
        if stats.backbone_macs:
            line += f" ({100.0 * stats.average_macs / stats.backbone_macs:.1f}% of the model without exits: "
            line += f"{stats.backbone_macs:,})"
        lines.append(line)
    return lines
