"""Scoring and fine-tuning the networks of an AMC search, kept cheap because it runs every episode.

Hundreds of episodes each evaluate a network on the same reward subset, so the subset is decoded
and transformed once (:class:`CachedBatches`) and kept as tensors on the model's device; an
episode's evaluation is then only the forward passes. Optional fine-tuning (``--amc-ft-epochs``,
``--amc-ft-frequency``) reads a training loader and re-applies the episode's masks after every
optimizer step, so that the pruned channels stay pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["CachedBatches", "Finetuner", "Score", "evaluate_batches"]


@dataclass(frozen=True)
class Score:
    """Accuracy (percent) and mean cross-entropy of one evaluation."""

    top1: float
    top5: float
    loss: float
    num_samples: int


class CachedBatches:
    """A fixed set of ``(inputs, targets)`` batches held in memory on one device.

    Args:
        batches: the batches, e.g. a DataLoader over the reward subset (iterated once, here).
        device: where the tensors are kept (the model's device).
    """

    def __init__(self, batches: Iterable, device: torch.device | str = "cpu") -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = [(x.to(device), y.to(device)) for x, y in batches]
        self.num_samples = sum(int(y.shape[0]) for _, y in self.batches)
        if self.num_samples == 0:
            raise ValueError("the reward subset is empty")

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def inputs(self, limit: int | None = None) -> list[torch.Tensor]:
        """The input tensors of the first batches, up to ``limit`` samples."""
        out, seen = [], 0
        for x, _ in self.batches:
            if limit is not None and seen >= limit:
                break
            out.append(x if limit is None else x[: limit - seen])
            seen += int(out[-1].shape[0])
        return out


@torch.no_grad()
def evaluate_batches(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Score:
    """Top-1, top-5 (top-k for fewer classes) and mean loss of ``model`` in eval mode."""
    model.eval()
    correct1 = correct5 = 0
    loss_sum, count = 0.0, 0
    for x, y in batches:
        logits = model(x)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hits = top == y.unsqueeze(1)
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        count += int(y.shape[0])
    if count == 0:
        return Score(0.0, 0.0, 0.0, 0)
    return Score(100.0 * correct1 / count, 100.0 * correct5 / count, loss_sum / count, count)


class Finetuner:
    """Train a network for a few passes over a loader, keeping its masked weights at zero.

    Args:
        loader: the training batches (``(inputs, targets)``), e.g. ``--effective-train-size`` of the
            training split.
        optimizer: builds a fresh optimizer for a model's parameters (the run's hyper-parameters).
        device: where batches go.
    """

    def __init__(
        self,
        loader: Iterable,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        device: torch.device | str = "cpu",
    ) -> None:
        self.loader = loader
        self.optimizer = optimizer
        self.device = device

    def __call__(self, model: nn.Module, epochs: int, masks: Mapping[str, torch.Tensor] | None = None) -> None:
        if epochs <= 0:
            return
        from distiller.naming import normalize_module_name

        params = {normalize_module_name(n): p for n, p in model.named_parameters()}
        masked = [(params[n], m) for n, m in (masks or {}).items() if n in params]
        optimizer = self.optimizer(model.parameters())
        model.train()
        for _ in range(epochs):
            for x, y in self.loader:
                x, y = x.to(self.device), y.to(self.device)
                optimizer.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()
                with torch.no_grad():
                    for param, mask in masked:
                        param.mul_(mask)
        model.eval()
