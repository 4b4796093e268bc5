"""The classifier app under ``torchrun``: distributed data-parallel training with compression.

How a DDP run differs from a single-process one, and why:

* **Batch.** ``-b`` is the *global* batch, split evenly among the processes (``-b 256`` on 4
  processes = 64 per process), as it was with the original's DataParallel. A run's hyperparameters
  (batch, learning rate, steps per epoch, and so every step-based schedule) therefore do not depend
  on how many processes run it, and a checkpoint resumes with any number of processes.
* **Data.** Each epoch's seeded training subset and order are drawn alike on every rank and split
  among them (:class:`~distiller.data.samplers.DistributedEpochSampler`); ``set_epoch`` re-seeds
  each epoch. Validation and test are *not* split: every rank evaluates the whole split, so the
  printed accuracy is exactly what a single process measures on the same weights, and every rank
  sees the same metrics (``ReduceLROnPlateau``, best-score tracking).
* **Model.** Training runs through :class:`~distiller.distributed.RewrappingDDP`, rebuilt when
  thinning or quantization-aware training changes the parameters; everything else (masks,
  checkpoints, summaries) uses the unwrapped model, whose names carry no ``module.`` prefix.
* **Compression.** Hooks go through :class:`~distiller.distributed.SynchronizedScheduler`: masks and
  buffers are kept equal and activation statistics all-reduced (see its module).
* **Output.** Rank 0 alone logs, writes the log dir, checkpoints and reports, and prints results.
* **Failures.** Collective operations time out after ``--ddp-timeout`` seconds; a failing rank logs
  its error, leaves the group and exits non-zero, and ``torchrun`` stops the others.

Set ``DISTILLER_DDP_AUDIT=DIR`` to have every rank append digests of its masks, weights and buffers
at each epoch end to ``DIR/rank<r>.jsonl``: equal lines across ranks prove the ranks agree.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from distiller.distributed.collectives import barrier, broadcast_object
from distiller.distributed.env import LaunchEnv, launch_env
from distiller.distributed.process_group import DistContext, init_distributed, shutdown
from distiller.errors import ConfigError, DistributedError

if TYPE_CHECKING:
    from distiller.apps.classifier import ClassifierApp
    from distiller.apps.options import ClassifierOptions

__all__ = [
    "AUDIT_ENV",
    "audit_writer",
    "check_ddp_options",
    "ddp_device",
    "ddp_session",
    "failure_summary",
    "process_batch_size",
    "sampler_kwargs",
    "shard_loader",
    "shared_seed",
    "training_pair",
]

log = logging.getLogger(__name__)

AUDIT_ENV = "DISTILLER_DDP_AUDIT"
"""Environment variable naming a folder where each rank writes per-epoch digests (``rank<r>.jsonl``)."""


def ddp_device(opts: ClassifierOptions, env: LaunchEnv) -> torch.device:
    """This rank's device: ``--gpus`` lists one GPU per local rank (rank r uses ``gpus[LOCAL_RANK]``);
    without it local rank r uses ``cuda:r``; ``--cpu`` or no CUDA means the CPU."""
    if opts.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    if opts.gpus:
        try:
            ids = [int(x) for x in opts.gpus.split(",") if x.strip()]
        except ValueError:
            raise ConfigError(f"--gpus expects a comma-separated list of device ids, got {opts.gpus!r}.") from None
        if env.local_rank >= len(ids):
            raise ConfigError(
                f"--gpus {opts.gpus} lists {len(ids)} GPU(s) but this machine runs {env.local_world_size} processes "
                f"(LOCAL_RANK={env.local_rank} has none): list one GPU per process, or start fewer with "
                "torchrun --nproc_per_node."
            )
        index = ids[env.local_rank]
    else:
        index = env.local_rank
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"Local rank {env.local_rank} would use cuda:{index}, but this machine has {torch.cuda.device_count()} "
            "GPU(s). Start at most one process per GPU (torchrun --nproc_per_node), or pass --gpus."
        )
    return torch.device("cuda", index)


def check_ddp_options(opts: ClassifierOptions, world_size: int) -> None:
    """Refuse what a distributed run cannot do as asked, before any work starts."""
    if opts.batch_size % world_size:
        raise ConfigError(
            f"-b {opts.batch_size} is the global batch, split evenly among the {world_size} processes: make it a "
            f"multiple of {world_size} (e.g. -b {opts.batch_size - opts.batch_size % world_size or world_size})."
        )
    single = [flag for flag, on in (("--greedy", opts.greedy.enabled), ("--amc", opts.amc.enabled)) if on]
    if single:
        raise ConfigError(
            f"{single[0]} fine-tunes candidates on the training split in a loop of its own, which does not "
            "synchronize ranks: start it in one process (without torchrun)."
        )
    if opts.kd_teacher and opts.kd_teacher_wt > 0:
        raise ConfigError(
            "--kd-teacher-wt > 0 trains the teacher alongside the student, but under DDP each rank runs its own "
            "teacher and their updates would diverge. Train the teacher first, or run in one process."
        )


@contextlib.contextmanager
def ddp_session(opts: ClassifierOptions) -> Iterator[DistContext | None]:
    """Join the job when ``torchrun`` started this process (else yield ``None``), and always leave it.

    A failure on this rank is logged with its rank before the group is left, so that the user sees
    the cause and not only the other ranks' timeouts; the exception then propagates and the process
    exits non-zero, which makes ``torchrun`` stop the other ranks.
    """
    env = launch_env()
    if env is None:
        yield None
        return
    ctx = init_distributed(env, ddp_device(opts, env), backend=opts.ddp.backend, timeout_s=opts.ddp.timeout)
    try:
        check_ddp_options(opts, ctx.world_size)
        yield ctx
        barrier("end of the run")  # nobody leaves while another rank may still need it
    except BaseException as err:
        log.error("Rank %d/%d %s", ctx.rank, ctx.world_size, failure_summary(err))
        raise
    finally:
        shutdown()


_PEER_LOST = ("connection closed by peer", "connection reset", "timed out", "timeout", "broken pipe", "nccl")


def failure_summary(err: BaseException) -> str:
    """What went wrong on this rank, in words: its own error, or the loss of a peer that failed first."""
    import torch.distributed as dist

    text = " ".join(str(err).split())
    lost_peer = isinstance(err, dist.DistBackendError) or (
        isinstance(err, RuntimeError)
        and not isinstance(err, DistributedError)
        and any(marker in text.lower() for marker in _PEER_LOST)
    )
    if lost_peer:
        return (
            f"stopped: it lost contact with the other ranks ({type(err).__name__}: {text[:300]}). Another rank "
            "most likely failed first: look for its message; a rank that stalls is detected after --ddp-timeout."
        )
    return f"failed: {type(err).__name__}: {text}"


def shared_seed(seed: int, ctx: DistContext | None) -> int:
    """Rank 0's seed on every rank: the ranks must draw the same data subsets, splits and initial weights."""
    return seed if ctx is None else int(broadcast_object(seed, what="seed broadcast"))


def process_batch_size(batch_size: int, ctx: DistContext | None) -> int:
    """Each process's share of the global batch ``-b``."""
    return batch_size if ctx is None else batch_size // ctx.world_size


def sampler_kwargs(ctx: DistContext | None) -> dict[str, int]:
    """``load_data`` arguments that split the training data among the ranks."""
    return {} if ctx is None else {"num_replicas": ctx.world_size, "rank": ctx.rank}


def shard_loader(loader: DataLoader, ctx: DistContext | None) -> DataLoader:
    """A loader over this rank's share (every N-th sample) of ``loader``'s fixed order, for calibration.

    No padding: statistics merged across ranks must count every sample exactly once.
    """
    if ctx is None:
        return loader
    indices = list(iter(loader.sampler))[ctx.rank :: ctx.world_size]
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=indices,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )


def audit_writer(directory: str | os.PathLike | None, ctx: DistContext) -> Callable[[int, dict[str, Any]], None] | None:
    """``audit(epoch, fingerprints)`` appending one JSON line to ``directory/rank<r>.jsonl`` (None: no audit)."""
    if not directory:
        return None
    path = Path(directory) / f"rank{ctx.rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def audit(epoch: int, digests: dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(json.dumps({"epoch": epoch, "rank": ctx.rank, **digests}, sort_keys=True) + "\n")

    return audit


def training_pair(app: ClassifierApp, collectors: list[Any]) -> tuple[Any, Any]:
    """The model to train through and the scheduler to call hooks on: the app's own in a single
    process; under DDP a :class:`RewrappingDDP` and a :class:`SynchronizedScheduler` around them."""
    ctx = app.dist
    if ctx is None:
        return app.model, app.scheduler
    from distiller.distributed.scheduler import SynchronizedScheduler
    from distiller.distributed.wrapper import RewrappingDDP

    o = app.opts
    log.info(
        "DDP: %d processes (%s), global batch %d = %d x %d per process (the learning rate is not scaled); "
        "validation and test run on every process over the whole split",
        ctx.world_size,
        ctx.backend,
        o.batch_size,
        ctx.world_size,
        process_batch_size(o.batch_size, ctx),
    )
    audit = audit_writer(os.environ.get(AUDIT_ENV), ctx)
    return RewrappingDDP(app.model, ctx.device), SynchronizedScheduler(app.scheduler, collectors, audit)
