"""All-reducing statistics gathered on each rank's share of the data.

Under DDP each rank sees 1/N of every epoch. Statistics that drive compression decisions, such as
the activation statistics that APoZ and mean-activation pruners rank channels by, must describe the
whole epoch, or each rank would rank (and prune) differently. A sample-weighted mean combines
exactly: sum the weighted totals and the counts over the ranks, then divide. Merging is idempotent
when every rank saw the same data (the mean of equal means is that mean), so it is always safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from distiller.distributed.collectives import all_gather_objects, all_reduce_
from distiller.distributed.process_group import is_active
from distiller.errors import DistributedError

__all__ = ["WeightedSum", "all_reduce_weighted_sums"]


class WeightedSum(Protocol):
    """An accumulator of ``total`` (sum of value x weight; a tensor or ``None`` when empty) and ``count``."""

    total: torch.Tensor | None
    count: int


def all_reduce_weighted_sums(accumulators: Sequence[Any]) -> None:
    """Replace every accumulator's ``total`` and ``count`` by their sums over all ranks (in place).

    Every rank must pass its accumulators in the same order. An accumulator empty on some rank (its
    share held no data for it) contributes nothing.

    Raises:
        DistributedError: the ranks' accumulators differ in number or in shape.
    """
    if not is_active():
        return
    layout = [None if a.total is None else tuple(a.total.shape) for a in accumulators]
    views = all_gather_objects(layout, what="statistics layout check")
    shapes: list[tuple[int, ...] | None] = []
    for index in range(len(layout)):
        seen = {view[index] for view in views if len(view) == len(layout) and view[index] is not None}
        if any(len(view) != len(layout) for view in views) or len(seen) > 1:
            raise DistributedError(
                f"The ranks collected different statistics (accumulator {index}: {sorted(map(str, seen))}, "
                f"{[len(v) for v in views]} accumulators per rank): they do not watch the same model."
            )
        shapes.append(next(iter(seen), None))
    parts = []
    for acc, shape in zip(accumulators, shapes):
        if shape is None:
            continue
        total = acc.total if acc.total is not None else torch.zeros(shape, dtype=torch.float64)
        parts.append(total.detach().double().cpu().reshape(-1))
    counts = torch.tensor([float(a.count) for a in accumulators], dtype=torch.float64)
    flat = torch.cat([*parts, counts])
    all_reduce_(flat, "sum", what="statistics all-reduce")
    offset = 0
    for acc, shape in zip(accumulators, shapes):
        if shape is None:
            continue
        numel = int(torch.Size(shape).numel())
        acc.total = flat[offset : offset + numel].reshape(shape).clone()
        offset += numel
    for acc, count in zip(accumulators, flat[offset:].tolist()):
        acc.count = int(round(count))
