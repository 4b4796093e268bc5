"""Joining and leaving the process group of a distributed job.

One :class:`DistContext` describes this process's place in the job once the group is up: its rank,
the backend (``nccl`` between GPUs, ``gloo`` on CPUs), its device and the timeout of collective
operations. The timeout matters more than it seems: when one process of a job fails, the others wait
in their next collective operation for a peer that never comes. With a timeout they fail too, with
an error that names the cause, and ``torchrun`` ends the job instead of leaving it hanging.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from distiller.distributed.env import LaunchEnv
from distiller.errors import DistributedError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistContext",
    "current",
    "init_distributed",
    "is_active",
    "is_main_process",
    "rank",
    "shutdown",
    "world_size",
]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0
"""Seconds a collective operation may wait for the other ranks (PyTorch's own default for gloo)."""

BACKENDS = ("auto", "nccl", "gloo")


@dataclass(frozen=True)
class DistContext:
    """This process's place in an initialized distributed job.

    Attributes:
        env: the launch environment (world size, ranks).
        backend: ``nccl`` or ``gloo``.
        device: the device this process computes on.
        timeout_s: seconds a collective operation waits before it fails.
    """

    env: LaunchEnv
    backend: str
    device: torch.device
    timeout_s: float

    @property
    def rank(self) -> int:
        return self.env.rank

    @property
    def world_size(self) -> int:
        return self.env.world_size

    @property
    def local_rank(self) -> int:
        return self.env.local_rank

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, prints the result line and writes files."""
        return self.env.rank == 0

    def describe(self) -> str:
        return f"rank {self.rank}/{self.world_size} ({self.backend}, {self.device})"


_CURRENT: DistContext | None = None


def _check_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise DistributedError(f"Unknown distributed backend {backend!r}; use one of {', '.join(BACKENDS)}.")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError(
            f"The nccl backend connects GPUs, but this process computes on {device}. Use --ddp-backend gloo "
            "(or auto) for CPU runs."
        )
    return backend


def init_distributed(
    env: LaunchEnv, device: torch.device | str, *, backend: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S
) -> DistContext:
    """Join the job's process group (rendezvous through ``MASTER_ADDR``/``MASTER_PORT``).

    Args:
        env: the launch environment (:func:`~distiller.distributed.env.launch_env`).
        device: this process's device; a CUDA device becomes the current device.
        backend: ``auto`` (``nccl`` for CUDA devices, ``gloo`` otherwise), ``nccl`` or ``gloo``.
        timeout_s: how long collective operations (and the rendezvous) wait for the other ranks.

    Raises:
        DistributedError: bad backend, non-positive timeout, or the rendezvous failed.
    """
    global _CURRENT
    device = torch.device(device)
    if not timeout_s > 0:
        raise DistributedError(f"The collective timeout must be a positive number of seconds, got {timeout_s!r}.")
    backend = _check_backend(backend, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_available():
        raise DistributedError("This PyTorch build has no torch.distributed support; DDP runs are not possible.")
    if not dist.is_initialized():
        try:
            dist.init_process_group(
                backend, rank=env.rank, world_size=env.world_size, timeout=timedelta(seconds=timeout_s)
            )
        except (RuntimeError, ValueError) as err:
            raise DistributedError(
                f"Rank {env.rank} could not join the job of {env.world_size} processes ({backend}): {err}. "
                "Check that every process was started with the same MASTER_ADDR/MASTER_PORT (torchrun does it) "
                "and that the address is reachable."
            ) from err
    _CURRENT = DistContext(env, backend, device, float(timeout_s))
    log.debug("Joined the process group as %s", _CURRENT.describe())
    return _CURRENT


def shutdown() -> None:
    """Leave the process group (safe to call when none was joined)."""
    global _CURRENT
    _CURRENT = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current() -> DistContext | None:
    """The context of the joined job of more than one process, or ``None`` (single-process run)."""
    return _CURRENT if is_active() else None


def is_active() -> bool:
    """Whether a process group of more than one process is up."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 outside a distributed job)."""
    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    """Processes in the job (1 outside a distributed job)."""
    return dist.get_world_size() if is_active() else 1


def is_main_process() -> bool:
    """Rank 0, or the only process."""
    return rank() == 0
