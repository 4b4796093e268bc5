"""Random draws that every rank of a distributed job agrees on.

Pruners that draw at random (random filter ranking, Bernoulli dropping, random sparsity levels,
the ε-greedy ranking noise) must produce the same mask on every rank: DDP keeps the weights of all
ranks equal only as long as every rank applies the same update, and a mask is part of the update.
Seeding every rank alike is not enough, because each rank's random stream also serves dropout and
data augmentation on its own data and drifts. So each draw is made on every rank (keeping the
generators' consumption identical) and then replaced by rank 0's values: one broadcast per draw, a
few hundred bytes.

Code that runs a *different* amount of work on each rank (the shares of a sensitivity analysis or of
AMC episodes, see :mod:`distiller.distributed.work`) must not broadcast, since the other ranks would
never join the collective: it runs inside :func:`rank_local`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

from distiller.distributed.collectives import broadcast_
from distiller.distributed.process_group import is_active

__all__ = ["rank_local", "same_on_all_ranks", "shared_draws_enabled"]

_STATE = threading.local()


@contextlib.contextmanager
def rank_local() -> Iterator[None]:
    """Inside this block random draws stay local to this rank (no collective operation)."""
    depth = getattr(_STATE, "local_depth", 0)
    _STATE.local_depth = depth + 1
    try:
        yield
    finally:
        _STATE.local_depth = depth


def shared_draws_enabled() -> bool:
    """Whether :func:`same_on_all_ranks` broadcasts (a job of several ranks, outside :func:`rank_local`)."""
    return is_active() and getattr(_STATE, "local_depth", 0) == 0


def same_on_all_ranks(draw: torch.Tensor) -> torch.Tensor:
    """``draw`` replaced in place by rank 0's draw (unchanged in a single-process run); returns it.

    Every rank must call it for the same draws in the same order, which deterministic code on equal
    weights does.
    """
    if shared_draws_enabled():
        broadcast_([draw], src=0, what="random draw of a pruner")
    return draw
