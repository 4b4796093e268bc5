"""The compression scheduler's training-loop contract.

A training loop calls six hooks, with the original Distiller's signatures, so that any loop
written for Distiller keeps working::

    scheduler.on_epoch_begin(epoch)
    for step, batch in enumerate(loader):
        scheduler.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)
        loss = criterion(model(x), y)
        loss = scheduler.before_backward_pass(epoch, step, steps_per_epoch, loss, optimizer)
        loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps_per_epoch, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps_per_epoch, optimizer)
    scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": top1})

This module holds the scheduler's state that other parts already rely on (the masks, keyed by
canonical parameter names, which checkpoints save and restore). Policies attach to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distiller.naming import normalize_module_name


@dataclass
class LossComponent:
    """A named term added to the task loss (a regularizer, a distillation loss)."""

    name: str
    value: torch.Tensor


@dataclass
class PolicyLoss:
    """The overall loss and the components that policies added to it."""

    overall_loss: torch.Tensor
    loss_components: list[LossComponent] = field(default_factory=list)


class CompressionScheduler:
    """Calls the compression policies at the right points of training and owns the masks.

    Args:
        model: the model being compressed.
        device: where masks live; defaults to the device of the model's first parameter.
    """

    def __init__(self, model: nn.Module, device: torch.device | str | None = None) -> None:
        self.model = model
        if device is None:
            first = next(model.parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.masks: dict[str, torch.Tensor | None] = {
            normalize_module_name(name): None for name, _ in model.named_parameters()
        }

    # --- the six hooks -------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        """Called before the first minibatch of ``epoch``."""

    def on_minibatch_begin(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Called before the forward pass of a minibatch."""

    def before_backward_pass(
        self,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        return_loss_components: bool = False,
    ) -> torch.Tensor | PolicyLoss:
        """Returns the loss to back-propagate: the task loss plus whatever policies add."""
        overall = PolicyLoss(loss, [])
        return overall if return_loss_components else overall.overall_loss

    def before_parameter_optimization(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Called after the backward pass, before ``optimizer.step()``."""

    def on_minibatch_end(
        self, epoch: int, minibatch_id: int, minibatches_per_epoch: int, optimizer: torch.optim.Optimizer | None = None
    ) -> None:
        """Called after ``optimizer.step()``: re-applies masks so pruned weights stay zero."""
        self.apply_masks()

    def on_epoch_end(
        self, epoch: int, optimizer: torch.optim.Optimizer | None = None, metrics: dict[str, float] | None = None
    ) -> None:
        """Called after validation, with the validation metrics (``{'min': loss, 'max': top1}``)."""

    # --- masks ---------------------------------------------------------------------------------

    @torch.no_grad()
    def apply_masks(self) -> None:
        """Multiply every masked parameter by its mask."""
        params = {normalize_module_name(n): p for n, p in self.model.named_parameters()}
        for name, mask in self.masks.items():
            if mask is not None and name in params:
                params[name].mul_(mask.to(params[name].device, params[name].dtype))

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data and tensors only, so checkpoints stay loadable with ``weights_only=True``."""
        return {"masks_dict": {name: (None if m is None else m.detach().cpu()) for name, m in self.masks.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore masks (names with or without ``module.``) and apply them to the model."""
        for name, mask in (state.get("masks_dict") or {}).items():
            key = normalize_module_name(name)
            self.masks[key] = None if mask is None else mask.to(self.device)
        self.apply_masks()
