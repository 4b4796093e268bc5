"""Filter pruners ranked by gradient, at random, or dropped by coin flips.

Each is :class:`~distiller.pruning.ranked.RankedStructurePruner` with a different per-filter
score; Bernoulli replaces the ranking by independent draws and rescales the survivors.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from distiller.distributed.rng import same_on_all_ranks
from distiller.pruning.base import register_pruner
from distiller.pruning.ranked import CannotRankYet, RankedStructurePruner

__all__ = ["BernoulliFilterPruner", "FilterRankedPruner", "GradientRankedFilterPruner", "RandomRankedFilterPruner"]


class FilterRankedPruner(RankedStructurePruner):
    """Filters only, with the original's five constructor arguments (YAML validates against them)."""

    supported_groups = ("3D", "Filters")

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
    ) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency)



@register_pruner
class GradientRankedFilterPruner(FilterRankedPruner):
    """Rank filters by the first-order Taylor estimate of the loss change, ``|sum(w * dL/dw)|``.

    Molchanov et al. 2017. The original ranked by the signed sum; the magnitude is what the
    Taylor criterion measures (a large negative sum is as important as a large positive one).
    Parameters without a gradient yet keep their mask.
    """

    def scores(self, param, param_name, meta):
        if param.grad is None:
            raise CannotRankYet("it has no gradient yet")
        with torch.no_grad():
            return (param.grad * param).reshape(param.shape[0], -1).sum(dim=1).abs()


@register_pruner
class RandomRankedFilterPruner(FilterRankedPruner):
    """Prune a random choice of filters: the sanity baseline for the ranking criteria."""

    def scores(self, param, param_name, meta):
        # drawn on rank 0 in a distributed run, so every rank prunes the same filters
        return same_on_all_ranks(torch.rand(param.shape[0], generator=self.generator))


@register_pruner
class BernoulliFilterPruner(FilterRankedPruner):
    """Drop each filter independently with probability ``desired_sparsity`` (DropFilter).

    The surviving filters are scaled by ``n_filters / n_kept`` so the layer's expected output
    is unchanged -- the mask is not 0/1. Use with ``mask_on_forward_only`` and
    ``discard_masks_at_minibatch_end`` for DropFilter training. At least one filter always
    survives (the original divided by zero when none did).
    """

    def keep_map(self, param, param_name, fraction, meta):
        if fraction <= 0:
            return None
        n = self.granularity.num_structures(param.shape)
        keep = torch.bernoulli(torch.full((n,), 1.0 - fraction), generator=self.generator)
        if keep.sum() == 0 and fraction < 1:
            keep[torch.randint(n, (1,), generator=self.generator)] = 1.0
        return same_on_all_ranks(keep)  # rank 0's coin flips on every rank

    def mask_from_keep_map(self, keep, param):
        mask = super().mask_from_keep_map(keep, param)
        kept = keep.sum()
        return mask if kept == 0 else mask.mul_(keep.numel() / kept.item())
