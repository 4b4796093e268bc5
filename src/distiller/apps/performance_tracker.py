"""Which epochs were best: sparsity first, then accuracy (the original's ordering).

A compression run is judged by how small the model got before how accurate it is, so among the
epochs the "best" one has the fewest non-zero weights, then the highest top-1, top-5, and the
latest epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def weights_nnz(model: nn.Module) -> tuple[int, int]:
    """(non-zero count, total count) over the weight tensors of convolutions and linear layers."""
    nnz = total = 0
    for _, param in model.named_parameters():
        if param.dim() in (2, 3, 4, 5):
            nnz += int(torch.count_nonzero(param.detach()))
            total += param.numel()
    return nnz, total


@dataclass(frozen=True)
class EpochScore:
    epoch: int
    top1: float
    top5: float
    nnz_params: int
    sparsity: float  # percent

    def describe(self) -> str:
        return (
            f"==> Best [Top1: {self.top1:.3f}   Top5: {self.top5:.3f}   Sparsity: {self.sparsity:.2f}   "
            f"NNZ-Params: {self.nnz_params:,} on epoch: {self.epoch}]"
        )


class SparsityAccuracyTracker:
    """Keeps the ``num_best_scores`` best epochs."""

    def __init__(self, num_best_scores: int = 1) -> None:
        self.num_best_scores = max(1, num_best_scores)
        self.scores: list[EpochScore] = []

    def step(self, model: nn.Module, epoch: int, top1: float, top5: float) -> None:
        nnz, total = weights_nnz(model)
        sparsity = 100.0 * (1 - nnz / total) if total else 0.0
        self.scores.append(EpochScore(epoch, top1, top5, nnz, sparsity))
        self.scores.sort(key=lambda s: (-s.nnz_params, s.top1, s.top5, s.epoch), reverse=True)
        del self.scores[self.num_best_scores :]

    def best(self) -> EpochScore | None:
        return self.scores[0] if self.scores else None

    def state_dict(self) -> list[dict]:
        return [vars(s).copy() for s in self.scores]

    def load_state_dict(self, state: list[dict]) -> None:
        self.scores = [EpochScore(**s) for s in state]
