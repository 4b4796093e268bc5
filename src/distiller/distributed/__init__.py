"""Distributed data-parallel (DDP) training with compression that stays consistent across ranks.

The pieces, each in its own module:

* :mod:`~distiller.distributed.env` — who this process is (``torchrun``'s ``WORLD_SIZE``, ``RANK``,
  ``LOCAL_RANK``);
* :mod:`~distiller.distributed.process_group` — joining and leaving the job, with a timeout on
  collective operations;
* :mod:`~distiller.distributed.collectives` — broadcast / all-reduce / gather with clear errors;
* :mod:`~distiller.distributed.rng` — random draws of pruners taken from rank 0;
* :mod:`~distiller.distributed.consistency` — masks, buffers and their digests;
* :mod:`~distiller.distributed.stats` — all-reduce of activation statistics;
* :mod:`~distiller.distributed.wrapper` — :class:`RewrappingDDP`, rebuilt after thinning or QAT;
* :mod:`~distiller.distributed.scheduler` — :class:`SynchronizedScheduler`, the scheduler's hooks
  plus the synchronization;
* :mod:`~distiller.distributed.work` — sharing independent evaluations (sensitivity, AMC) among ranks.

Everything is a no-op in a single process, so code can call it unconditionally. In your own loop::

    ctx = init_distributed(launch_env(), device)           # under torchrun
    ddp_model = RewrappingDDP(model, device)
    scheduler = SynchronizedScheduler(scheduler)
    ...train with ddp_model and scheduler as usual...
    shutdown()
"""

from distiller.distributed.collectives import (
    all_gather_objects,
    all_reduce_,
    barrier,
    broadcast_,
    broadcast_object,
    collective_device,
)
from distiller.distributed.env import LaunchEnv, launch_env
from distiller.distributed.process_group import (
    DEFAULT_TIMEOUT_S,
    DistContext,
    current,
    init_distributed,
    is_active,
    is_main_process,
    rank,
    shutdown,
    world_size,
)
from distiller.distributed.rng import rank_local, same_on_all_ranks
from distiller.distributed.work import gather_shares, my_share, shared_map, shared_results

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistContext",
    "LaunchEnv",
    "RewrappingDDP",
    "SynchronizedScheduler",
    "all_gather_objects",
    "all_reduce_",
    "barrier",
    "broadcast_",
    "broadcast_object",
    "collective_device",
    "current",
    "fingerprints",
    "gather_shares",
    "init_distributed",
    "is_active",
    "is_main_process",
    "launch_env",
    "my_share",
    "rank",
    "rank_local",
    "same_on_all_ranks",
    "shared_map",
    "shared_results",
    "shutdown",
    "sync_buffers",
    "world_size",
]

_LAZY = {
    # these import the scheduler and nn.parallel; pruning code imports this package for its RNG helper
    "RewrappingDDP": "distiller.distributed.wrapper",
    "SynchronizedScheduler": "distiller.distributed.scheduler",
    "fingerprints": "distiller.distributed.consistency",
    "sync_buffers": "distiller.distributed.consistency",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distiller.distributed' has no attribute {name!r}")
