"""The typed options of distributed (DDP) runs of the classifier app (``--ddp-*`` flags)."""

from __future__ import annotations

from dataclasses import dataclass

from distiller.distributed.process_group import DEFAULT_TIMEOUT_S


@dataclass
class DDPOptions:
    """How a run started by ``torchrun`` joins its job.

    Attributes:
        timeout: seconds a collective operation waits for the other ranks before the run fails
            (a crashed or stalled rank then ends the job instead of hanging it).
        backend: ``auto`` (``nccl`` on GPUs, ``gloo`` on CPUs), ``nccl`` or ``gloo``.
    """

    timeout: float = DEFAULT_TIMEOUT_S
    backend: str = "auto"
