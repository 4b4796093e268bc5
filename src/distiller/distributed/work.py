"""Sharing independent evaluations among the ranks of a distributed job.

Sensitivity analysis evaluates hundreds of (parameter, sparsity level) pairs, each independent of
the others; AMC evaluates candidate compressions of a model. With N ranks each takes every N-th item
(round robin, so that slow and fast items mix), evaluates it alone, and the results are gathered on
every rank in the original order. Inside a share, random draws stay rank-local
(:func:`~distiller.distributed.rng.rank_local`): the ranks do different work, so they must not wait
for each other.

A failure in one rank's share does not leave the others waiting: every rank reaches the gather, the
error travels with the results, and all ranks raise it.

How AMC can use it: the warm-up episodes of the DDPG search (random actions, no learning) are
independent; ``shared_map(run_episode, range(num_warmup))`` plays them on all ranks and every rank
receives all transitions to fill its replay buffer identically. For the learning episodes, which
depend on the agent's previous updates, each rank can evaluate a share of the layers' candidate
sparsities of one episode (the reward of each candidate is independent) and the agent steps on the
gathered rewards; the agent's own updates run on every rank with the same data, so the agents stay
equal.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from distiller.distributed.collectives import all_gather_objects
from distiller.distributed.process_group import rank, world_size
from distiller.distributed.rng import rank_local
from distiller.errors import DistributedError

__all__ = ["gather_shares", "my_share", "shared_map", "shared_results"]

T = TypeVar("T")
R = TypeVar("R")

_ERROR = "__distiller_share_error__"


def my_share(items: Sequence[T]) -> list[T]:
    """This rank's items: ``items[rank::world_size]`` (all of them in a single-process run)."""
    return list(items[rank() :: world_size()])


def gather_shares(local: Mapping[Any, Any], error: str | None = None) -> dict[Any, Any]:
    """Merge every rank's ``{key: result}`` into one dict, on every rank.

    Args:
        local: this rank's results (picklable keys and values).
        error: this rank's failure message, if its share failed; every rank then raises.

    Raises:
        DistributedError: some rank reported an error (the message names the rank).
    """
    payload = {_ERROR: error} if error is not None else dict(local)
    merged: dict[Any, Any] = {}
    failures = []
    for source, part in enumerate(all_gather_objects(payload, what="gather of shared results")):
        if _ERROR in part:
            failures.append(f"rank {source}: {part[_ERROR]}")
        else:
            merged.update(part)
    if failures:
        raise DistributedError("A share of the distributed work failed: " + "; ".join(failures))
    return merged


def shared_results(fn: Callable[[list[T]], Mapping[Any, R]], items: Sequence[T]) -> dict[Any, R]:
    """``fn(share)`` on this rank's share of ``items``; the merged ``{key: result}`` of all ranks.

    For work that is cheaper in batches than item by item (a pool of worker processes per rank, a
    progress bar over the share): ``fn`` gets this rank's items and returns a dict of results.
    ``fn`` runs inside :func:`~distiller.distributed.rng.rank_local` and must not use collective
    operations.

    Raises:
        DistributedError: ``fn`` raised on some rank (its message is included).
    """
    share = my_share(items)
    if world_size() == 1:
        return dict(fn(share))
    local: Mapping[Any, R] = {}
    error = None
    with rank_local():
        try:
            local = fn(share)
        except Exception as err:  # reported to every rank, so none waits for this one forever
            error = f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=3)}"
    return gather_shares(local, error)


def shared_map(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[fn(x) for x in items]`` with the items shared among the ranks; every rank gets the whole list.

    ``fn`` must not use collective operations (it runs on a different number of items per rank) and
    its results must be picklable.

    Raises:
        DistributedError: ``fn`` raised on some rank (its message is included).
    """
    merged = shared_results(lambda share: {i: fn(items[i]) for i in share}, range(len(items)))
    return [merged[i] for i in range(len(items))]
