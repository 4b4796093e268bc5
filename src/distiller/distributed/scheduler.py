"""The compression scheduler's hooks, plus what keeps the ranks of a DDP job consistent.

:class:`SynchronizedScheduler` stands in for a :class:`~distiller.scheduler.CompressionScheduler` in a
training loop (same six hooks, same signatures; every other attribute is the scheduler's) and adds,
around the hooks:

* before ``on_epoch_begin``: the activation statistics collected on each rank's share of the last
  epoch are all-reduced, so APoZ / mean-activation pruners rank by the whole epoch on every rank;
* after every hook that may change masks: masks that changed are broadcast from rank 0 with their
  parameters (a guarantee; they already agree, see :mod:`distiller.distributed.consistency`);
* at the last minibatch of an epoch: buffers are broadcast from rank 0, so that validation, the
  checkpoint and the next epoch see one model;
* after ``on_epoch_end``: an optional audit callback receives digests of masks, weights and buffers.

``before_backward_pass`` is passed through: regularization losses are computed per rank, like the
task loss, and their gradients are averaged by DDP with the rest. In a single process every addition
is a no-op, so the wrapper can be used unconditionally.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from distiller.distributed.consistency import (
    broadcast_changed_masks,
    changed_masks,
    fingerprints,
    parameter_lookup,
    snapshot_masks,
    sync_buffers,
)
from distiller.distributed.process_group import is_active

__all__ = ["SynchronizedScheduler"]


class SynchronizedScheduler:
    """Wrap ``scheduler`` so that its hooks keep every rank's compression state equal.

    Args:
        scheduler: the compression scheduler (its ``model`` is the unwrapped model).
        collectors: activation-statistics collectors (with ``all_reduce()``) that pruners read.
        audit: ``audit(epoch, fingerprints)`` called after each ``on_epoch_end``.

    Attributes:
        mask_broadcasts: how many hooks broadcast changed masks.
        broadcast_seconds: time spent in those broadcasts (the cost of the guarantee).
    """

    def __init__(
        self,
        scheduler: Any,
        collectors: Iterable[Any] = (),
        audit: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.scheduler = scheduler
        self.collectors = list(collectors)
        self.audit = audit
        self.mask_broadcasts = 0
        self.broadcast_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes not found here: masks, policies, state_dict, ... are the scheduler's.
        return getattr(self.__dict__["scheduler"], name)

    def _synced(self, hook: str, *args: Any, **kwargs: Any) -> Any:
        masks = self.scheduler.masks
        before = snapshot_masks(masks) if is_active() else {}
        result = getattr(self.scheduler, hook)(*args, **kwargs)
        if is_active():
            names = changed_masks(masks, before)
            if names:
                start = time.perf_counter()
                resolve = getattr(self.scheduler, "_masker_for", None)  # quantizers rename parameters
                broadcast_changed_masks(masks, names, parameter_lookup(self.scheduler.model, resolve))
                self.mask_broadcasts += 1
                self.broadcast_seconds += time.perf_counter() - start
        return result

    def on_epoch_begin(self, epoch: int, optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        for collector in self.collectors:
            collector.all_reduce()
        self._synced("on_epoch_begin", epoch, optimizer, **kwargs)

    def on_minibatch_begin(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: Any = None
    ) -> None:
        self._synced("on_minibatch_begin", epoch, minibatch_id, minibatches_per_epoch, optimizer)

    def before_backward_pass(self, *args: Any, **kwargs: Any) -> Any:
        return self.scheduler.before_backward_pass(*args, **kwargs)

    def before_parameter_optimization(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: Any = None
    ) -> None:
        self._synced("before_parameter_optimization", epoch, minibatch_id, minibatches_per_epoch, optimizer)

    def on_minibatch_end(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: Any = None
    ) -> None:
        self._synced("on_minibatch_end", epoch, minibatch_id, minibatches_per_epoch, optimizer)
        if minibatch_id == minibatches_per_epoch - 1:
            sync_buffers(self.scheduler.model)

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        self._synced("on_epoch_end", epoch, optimizer, **kwargs)
        if self.audit is not None:
            self.audit(epoch, fingerprints(self.scheduler.model, self.scheduler.masks))

    def __repr__(self) -> str:
        return f"SynchronizedScheduler({self.scheduler!r})"
