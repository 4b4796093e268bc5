"""Running averages and classification accuracy, accumulated over minibatches."""

from __future__ import annotations

import torch


class AverageMeter:
    """A sample-weighted running mean (e.g. of the loss over an epoch)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.count = 0

    def update(self, value: float, n: int = 1) -> None:
        self.total += float(value) * n
        self.count += n

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0


class AccuracyMeter:
    """Top-k accuracy in percent, and optionally the confusion matrix."""

    def __init__(self, topk: tuple[int, ...] = (1, 5), num_classes: int | None = None) -> None:
        self.topk = topk
        self.correct = dict.fromkeys(topk, 0)
        self.count = 0
        self.confusion = (
            torch.zeros(num_classes, num_classes, dtype=torch.long) if num_classes is not None else None
        )

    @torch.no_grad()
    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        k_max = min(max(self.topk), logits.shape[1])
        predicted = logits.topk(k_max, dim=1).indices
        hits = predicted.eq(target.view(-1, 1))
        for k in self.topk:
            self.correct[k] += int(hits[:, : min(k, k_max)].any(dim=1).sum())
        self.count += target.numel()
        if self.confusion is not None:
            n = self.confusion.shape[0]
            pairs = target.cpu() * n + predicted[:, 0].cpu()
            self.confusion += torch.bincount(pairs, minlength=n * n).view(n, n)

    def value(self, k: int) -> float:
        return 100.0 * self.correct[k] / self.count if self.count else 0.0
