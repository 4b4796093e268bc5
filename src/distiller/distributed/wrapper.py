"""A DistributedDataParallel wrapper that follows structural changes of the model it wraps.

DDP records the model's parameters when it is built: it allocates gradient buckets of their shapes
and hooks their gradient accumulators. Compression changes that set mid-training. Thinning removes
filters and channels (parameters shrink, or are replaced), and quantization-aware training adds
parameters (float weight copies, learned clipping values) when its policy first fires. A DDP built
before such a change all-reduces the wrong shapes or misses parameters, which shows up as a shape
error or as a hang in backward (Torch-Pruning #281/#438, NNI #5205).

:class:`RewrappingDDP` checks the parameters before each forward pass and, when their names, shapes,
dtypes or identities changed, drops the old DDP and builds a new one on the changed model. All ranks
change in the same step (they run the same schedule on equal weights), so all of them rebuild in the
same step, as DDP's construction (a collective operation) requires. Building a DDP also broadcasts
rank 0's parameters and buffers, so the ranks leave the rebuild bit-identical.

The optimizer is not touched here: thinning shrinks its state in place and quantizers add their
parameter groups to it, so the same optimizer object keeps working on every rank.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from distiller.distributed.collectives import collective_errors

__all__ = ["RewrappingDDP", "parameter_signature"]

log = logging.getLogger(__name__)


def parameter_signature(model: nn.Module) -> tuple:
    """What DDP depends on: name, shape, dtype, identity and ``requires_grad`` of every parameter."""
    return tuple((name, tuple(p.shape), p.dtype, id(p), p.requires_grad) for name, p in model.named_parameters())


class RewrappingDDP:
    """Call the model through DDP, rebuilding the DDP whenever the model's parameters change.

    It stands in for the model in a training loop (``train()``, ``eval()``, calling it); everything
    else (``state_dict``, ``named_parameters``, masks) should use :attr:`module`, the unwrapped model,
    whose names carry no ``module.`` prefix.

    Args:
        module: the model (already on this rank's device).
        device: this rank's device; a CUDA device becomes DDP's ``device_ids``.
        **ddp_kwargs: passed to :class:`~torch.nn.parallel.DistributedDataParallel`.
    """

    def __init__(self, module: nn.Module, device: torch.device | str | None = None, **ddp_kwargs: Any) -> None:
        self.module = module
        self.device = torch.device(device) if device is not None else None
        self.ddp_kwargs = ddp_kwargs
        self.rewraps = 0
        self.ddp: DistributedDataParallel | None = None
        self._signature: tuple = ()
        self._wrap()

    def _wrap(self) -> None:
        if self.ddp is not None:
            # The old reducer's gradient hooks must be gone before the next backward pass, or two
            # reducers would all-reduce the same gradients; DDP removes them when it is destroyed.
            self.ddp = None
            gc.collect()
        kwargs = dict(self.ddp_kwargs)
        if self.device is not None and self.device.type == "cuda":
            kwargs.setdefault("device_ids", [self.device.index if self.device.index is not None else 0])
        with collective_errors("DistributedDataParallel construction (are the models of all ranks equal?)"):
            self.ddp = DistributedDataParallel(self.module, **kwargs)
        self._signature = parameter_signature(self.module)

    def refresh(self) -> bool:
        """Rebuild the DDP if the parameters changed since it was built; whether it was rebuilt."""
        if parameter_signature(self.module) == self._signature:
            return False
        self.rewraps += 1
        log.info("The model's parameters changed (thinning or quantization): rebuilding DistributedDataParallel")
        self._wrap()
        return True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh()
        assert self.ddp is not None
        return self.ddp(*args, **kwargs)

    def train(self, mode: bool = True) -> RewrappingDDP:
        self.module.train(mode)
        return self

    def eval(self) -> RewrappingDDP:
        return self.train(False)

    @property
    def training(self) -> bool:
        return self.module.training

    def parameters(self, recurse: bool = True):  # noqa: ANN201 - the module's iterator
        return self.module.parameters(recurse)

    def named_parameters(self, *args: Any, **kwargs: Any):  # noqa: ANN201
        return self.module.named_parameters(*args, **kwargs)

    def __repr__(self) -> str:
        return f"RewrappingDDP({type(self.module).__name__}, rewraps={self.rewraps})"
