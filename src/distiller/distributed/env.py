"""The launch environment of a distributed run, as ``torchrun`` describes it.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells each one
who it is through environment variables: ``WORLD_SIZE`` (processes in the job), ``RANK`` (this
process in the job), ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` (this process on its machine) and the
rendezvous address (``MASTER_ADDR``/``MASTER_PORT``). Reading them in one place lets every part of
Distiller agree on what "distributed" means: a job of more than one process. A single process, even
one started by ``torchrun --nproc_per_node 1``, runs exactly like a plain ``python`` run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from distiller.errors import DistributedError

__all__ = ["LaunchEnv", "launch_env"]


@dataclass(frozen=True)
class LaunchEnv:
    """Who this process is in its job.

    Attributes:
        world_size: processes in the job (all machines).
        rank: this process's index in ``[0, world_size)``; rank 0 logs and writes files.
        local_rank: this process's index on its machine; it picks the local device.
        local_world_size: processes on this machine.
    """

    world_size: int
    rank: int
    local_rank: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, prints results and writes checkpoints."""
        return self.rank == 0


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None or text == "":
        if default is None:
            raise DistributedError(
                f"WORLD_SIZE is set but {name} is not: start distributed runs with torchrun "
                "(python -m torch.distributed.run), which sets WORLD_SIZE, RANK and LOCAL_RANK for every process."
            )
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"Environment variable {name}={text!r} is not an integer.") from None


def launch_env(env: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launch environment when this process belongs to a job of several processes, else ``None``.

    Args:
        env: the variables to read (default: ``os.environ``).

    Raises:
        DistributedError: the variables are inconsistent (a rank outside the world, a missing rank).
    """
    env = os.environ if env is None else env
    if not env.get("WORLD_SIZE"):
        return None
    world = _int(env, "WORLD_SIZE")
    if world <= 1:
        return None
    rank = _int(env, "RANK")
    local_rank = _int(env, "LOCAL_RANK", 0)
    local_world = _int(env, "LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world:
        raise DistributedError(f"RANK={rank} is outside [0, WORLD_SIZE={world}).")
    if not 0 <= local_rank < max(local_world, 1):
        raise DistributedError(f"LOCAL_RANK={local_rank} is outside [0, LOCAL_WORLD_SIZE={local_world}).")
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise DistributedError(
                f"WORLD_SIZE={world} but {name} is not set: the processes cannot find each other. Launch with "
                "torchrun (--standalone on one machine, --rdzv-endpoint HOST:PORT on several)."
            )
    return LaunchEnv(world, rank, local_rank, local_world)
