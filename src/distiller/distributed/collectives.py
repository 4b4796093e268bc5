"""Collective operations with clear errors: broadcast, all-reduce, gather of Python objects.

Each wraps the ``torch.distributed`` call so that callers need not care about the backend: ``nccl``
only moves CUDA tensors, so CPU tensors (masks kept on the host, statistics) travel through the
current CUDA device and are copied back. A collective that fails, most often because another rank
died or stalled until the timeout, raises :class:`~distiller.errors.DistributedError` naming the
operation and this rank, instead of the backend's bare socket or watchdog message.

All of them are no-ops in a single-process run, so library code calls them unconditionally.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist

from distiller.distributed.process_group import is_active, rank, world_size
from distiller.errors import DistributedError

__all__ = [
    "all_gather_objects",
    "all_reduce_",
    "barrier",
    "broadcast_",
    "broadcast_object",
    "collective_device",
    "collective_errors",
]

_OPS = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}


def collective_device() -> torch.device:
    """Where tensors must be for the backend: the current CUDA device for ``nccl``, else the CPU."""
    if is_active() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def collective_errors(what: str) -> Iterator[None]:
    """Turn a backend failure inside the block into a :class:`DistributedError` that says what to check."""
    try:
        yield
    except DistributedError:
        raise
    except (RuntimeError, ValueError) as err:  # DistBackendError is a RuntimeError
        raise DistributedError(
            f"Rank {rank()}/{world_size()}: collective operation '{what}' failed: {err}. Another rank most likely "
            "failed or stalled (look for its message above); raise --ddp-timeout if ranks legitimately wait longer."
        ) from err


def broadcast_(tensors: Sequence[torch.Tensor], src: int = 0, what: str = "broadcast") -> None:
    """Overwrite ``tensors`` in place with rank ``src``'s values (same shapes on every rank)."""
    if not is_active() or not tensors:
        return
    device = collective_device()
    with collective_errors(what):
        for tensor in tensors:
            if tensor.device == device and tensor.is_contiguous():
                dist.broadcast(tensor, src)
            else:
                staged = tensor.detach().to(device).contiguous()
                dist.broadcast(staged, src)
                with torch.no_grad():
                    tensor.copy_(staged)


def all_reduce_(tensor: torch.Tensor, op: str = "sum", what: str = "all_reduce") -> torch.Tensor:
    """Reduce ``tensor`` in place over all ranks (``sum``, ``max`` or ``min``); returns it."""
    if not is_active():
        return tensor
    device = collective_device()
    with collective_errors(what):
        if tensor.device == device and tensor.is_contiguous():
            dist.all_reduce(tensor, _OPS[op])
        else:
            staged = tensor.detach().to(device).contiguous()
            dist.all_reduce(staged, _OPS[op])
            with torch.no_grad():
                tensor.copy_(staged)
    return tensor


def broadcast_object(obj: Any, src: int = 0, what: str = "broadcast_object") -> Any:
    """Rank ``src``'s ``obj`` (picklable) on every rank."""
    if not is_active():
        return obj
    box = [obj]
    with collective_errors(what):
        dist.broadcast_object_list(box, src, device=collective_device())
    return box[0]


def all_gather_objects(obj: Any, what: str = "all_gather_object") -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * world_size()
    with collective_errors(what):
        dist.all_gather_object(out, obj)
    return out


def barrier(what: str = "barrier") -> None:
    """Wait until every rank gets here."""
    if not is_active():
        return
    with collective_errors(what):
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()
