"""Scheduled training policies: what a pruner, regularizer, quantizer or LR scheduler does at each hook.

A policy wraps one algorithm and implements the hooks of :class:`ScheduledTrainingPolicy` with the
original Distiller's signatures, so policies written for the original port unchanged. The scheduler
calls a policy only at the epochs (or steps) of its window, and passes ``meta``: the window's
metadata (``starting_epoch``, ``ending_epoch``, ``frequency``, or the ``*_step`` keys), the
``current_epoch`` (and ``current_step``), ``model``, ``optimizer`` and ``is_last_firing``.

Differences from the original, each fixing a silent failure:

- unknown or mistyped ``args`` of a policy raise :class:`ConfigError` (the original ignored them);
- "last epoch" is the window's last *firing*, so ``keep_mask`` also works when ``frequency`` does
  not divide the window;
- a quantizer prepares the model when its policy first fires, not when the YAML is parsed;
- policies expose ``state_dict``/``load_state_dict`` so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.scheduler.lr import step_lr_scheduler
from distiller.scheduler.state import plain_state

__all__ = [
    "ExtensionPolicy",
    "LRPolicy",
    "LossComponent",
    "PolicyLoss",
    "QuantizationPolicy",
    "RegularizationPolicy",
    "ScheduledTrainingPolicy",
    "component_state",
    "is_last_firing",
    "load_component_state",
    "quantization_prepared",
]

logger = logging.getLogger(__name__)


class LossComponent(NamedTuple):
    """A named term a policy added to the loss (a regularizer's penalty, the distillation loss)."""

    name: str
    value: torch.Tensor


class PolicyLoss(NamedTuple):
    """The loss to back-propagate and the components policies added to it.

    ``loss_components`` holds only the added terms, never the incoming loss.
    """

    overall_loss: torch.Tensor
    loss_components: list[LossComponent]


def is_last_firing(meta: Mapping[str, Any]) -> bool:
    """Whether this call is the policy's last firing (falls back to the original's test)."""
    if "is_last_firing" in meta:
        return bool(meta["is_last_firing"])
    return meta.get("current_epoch") == meta.get("ending_epoch", 0) - 1


class ScheduledTrainingPolicy:
    """Base class of all policies; every hook is a no-op.

    Args:
        classes: kept for compatibility with the original (unused there too).
        layers: kept for compatibility with the original (unused there too).
    """

    def __init__(self, classes: Any = None, layers: Any = None) -> None:
        self.classes = classes
        self.layers = layers

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        """A scheduled epoch (or step period) begins."""

    def on_minibatch_begin(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        meta: dict[str, Any],
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """The forward pass of a minibatch is about to begin."""

    def before_backward_pass(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        loss: torch.Tensor,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> PolicyLoss | None:
        """Return a :class:`PolicyLoss` to replace ``loss`` (never modify ``loss`` in place), or None."""
        return None

    def before_parameter_optimization(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        meta: dict[str, Any],
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        """The backward pass is done; ``optimizer.step()`` comes next."""

    def on_minibatch_end(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        """``optimizer.step()`` is done."""

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        """A scheduled epoch (or step period) ended; ``kwargs`` may hold ``metrics``."""

    # --- new, optional ---------------------------------------------------------------------------

    def observe_targets(self, targets: torch.Tensor) -> None:
        """Receive the minibatch labels (when the loop passes ``targets=`` to ``before_backward_pass``)."""

    def state_dict(self) -> dict[str, Any]:
        """State a resumed run needs (plain data and tensors)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


def component_state(component: Any) -> dict[str, Any]:
    fn = getattr(component, "state_dict", None)
    return plain_state(fn()) if callable(fn) else {}


def load_component_state(component: Any, state: Mapping[str, Any] | None) -> None:
    fn = getattr(component, "load_state_dict", None)
    if state and callable(fn):
        fn(state)


# --- regularization --------------------------------------------------------------------------------


class RegularizationPolicy(ScheduledTrainingPolicy):
    """Adds a regularizer's penalty to the loss, and applies its threshold masks.

    Args:
        regularizer: an object with ``loss(param, name, accumulated, zeros_mask_dict)`` and,
            optionally, ``threshold_criteria`` and ``threshold(param, name, zeros_mask_dict)``.
        keep_mask: at the last minibatch of the last scheduled epoch, turn the one-shot threshold
            masks into permanent masks (SSL: the regularized-away structures stay pruned).
    """

    def __init__(self, regularizer: Any, keep_mask: bool = False) -> None:
        super().__init__()
        if not isinstance(keep_mask, bool):
            raise ConfigError(f"Regularization-policy argument 'keep_mask' must be true or false, got {keep_mask!r}.")
        self.regularizer = regularizer
        self.keep_mask = keep_mask
        self.is_last_epoch = False
        self._step_window = False
        self._set_active(False)  # regularizers that act in the forward pass (DropFilter) wait for the window

    def _set_active(self, active: bool) -> None:
        set_active = getattr(self.regularizer, "set_active", None)
        if callable(set_active):
            set_active(active)

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.is_last_epoch = is_last_firing(meta)
        self._step_window = "current_step" in meta
        self._set_active(True)

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self._set_active(False)

    def before_backward_pass(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        loss: torch.Tensor,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> PolicyLoss:
        total = torch.tensor(0.0, dtype=torch.float, device=loss.device)
        for raw_name, param in model.named_parameters():
            out = self.regularizer.loss(param, normalize_module_name(raw_name), total, zeros_mask_dict)
            if out is not None:
                total = out
        name = type(self.regularizer).__name__ + "_loss"
        return PolicyLoss(loss + total, [LossComponent(name, total)])

    def on_minibatch_end(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        if getattr(self.regularizer, "threshold_criteria", None) is None:
            return
        last_minibatch = self._step_window or minibatch_id == minibatches_per_epoch - 1
        keep = self.keep_mask and self.is_last_epoch and last_minibatch
        if keep:
            logger.info("RegularizationPolicy keeps the regularization masks of %s", type(self.regularizer).__name__)
        for raw_name, param in model.named_parameters():
            name = normalize_module_name(raw_name)
            self.regularizer.threshold(param, name, zeros_mask_dict)
            masker = zeros_mask_dict.get(name)
            if masker is None:
                continue
            if keep:
                masker.is_regularization_mask = False
            masker.apply_mask(param)

    def state_dict(self) -> dict[str, Any]:
        return {"regularizer": component_state(self.regularizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        load_component_state(self.regularizer, state.get("regularizer"))


# --- learning rate ---------------------------------------------------------------------------------


class LRPolicy(ScheduledTrainingPolicy):
    """Steps an LR scheduler at the end of each scheduled epoch (or step).

    The LR is set to the scheduler's value for ``current + 1`` (see
    :func:`~distiller.scheduler.lr.step_lr_scheduler`); ``ReduceLROnPlateau`` gets
    ``metrics[mode]`` from ``on_epoch_end(..., metrics=...)``.
    """

    def __init__(self, lr_scheduler: Any) -> None:
        super().__init__()
        self.lr_scheduler = lr_scheduler

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        current = meta["current_step"] if "current_step" in meta else meta["current_epoch"]
        step_lr_scheduler(self.lr_scheduler, current + 1, kwargs.get("metrics"))

    def state_dict(self) -> dict[str, Any]:
        return {"lr_scheduler": component_state(self.lr_scheduler)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        saved = state.get("lr_scheduler")
        if isinstance(saved, Mapping):
            # Checkpoints hold plain dicts: give back the Counter that MultiStepLR's milestones are.
            saved = {
                k: Counter(v)
                if isinstance(getattr(self.lr_scheduler, k, None), Counter) and isinstance(v, Mapping)
                else v
                for k, v in saved.items()
            }
        load_component_state(self.lr_scheduler, saved)
        # The optimizer's LR must be the restored scheduler's: building a PyTorch scheduler with
        # last_epoch != -1 takes one (chainable) step that may have changed it.
        get_last_lr = getattr(self.lr_scheduler, "get_last_lr", None)
        optimizer = getattr(self.lr_scheduler, "optimizer", None)
        try:
            last = list(get_last_lr()) if callable(get_last_lr) else None
        except (AttributeError, RuntimeError):
            last = None
        if last is not None and optimizer is not None and len(last) == len(optimizer.param_groups):
            for group, lr in zip(optimizer.param_groups, last):
                group["lr"] = lr


# --- quantization ----------------------------------------------------------------------------------


class QuantizationPolicy(ScheduledTrainingPolicy):
    """Quantization-aware training: prepares the model when it first fires, re-quantizes each step.

    The original called ``quantizer.prepare_model()`` in the constructor, i.e. while the YAML was
    parsed, so merely validating a schedule transformed the model and QAT had to start at epoch 0.
    Here preparation waits for the policy's first firing, so QAT may start after pruning:

    * ``on_epoch_begin`` of the first firing: ``prepare_model()`` in place (float copies,
      replaced activations), learned quantization parameters (PACT's α) added to the optimizer as
      new parameter groups (the quantizer's ``optimizer``, else the one in ``meta``), then
      ``quantize_params()``. The scheduler then extends its LR schedulers to the new groups
      (:meth:`CompressionScheduler._sync_lr_param_groups`), which start at the first group's
      current LR and follow the same schedule.
    * ``on_minibatch_end``: ``quantize_params()`` after the optimizer step (the forward pass
      re-quantizes anyway; this keeps the quantized buffers current for anything reading them
      between steps).
    * After the window the model stays quantized: the window says when QAT starts, not when it stops.

    Resume: :meth:`state_dict` records whether the model was prepared. :meth:`load_state_dict`
    with ``prepared`` prepares the model at once, adding the optimizer groups, so the caller must
    restore the scheduler state *after* building the schedule with the run's optimizer and *before*
    loading the model weights and the optimizer state (see :func:`quantization_prepared`).
    """

    def __init__(self, quantizer: Any) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.prepared = False

    def prepare(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Prepare the model now (idempotent); also called by the first firing."""
        if self.prepared:
            return
        if optimizer is not None and getattr(self.quantizer, "optimizer", False) is None:
            self.quantizer.optimizer = optimizer
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()
        self.prepared = True

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.prepare(meta.get("optimizer"))

    def on_minibatch_end(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        if self.prepared:
            self.quantizer.quantize_params()

    def state_dict(self) -> dict[str, Any]:
        return {"prepared": self.prepared, "quantizer": component_state(self.quantizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("prepared") and not self.prepared:
            logger.info(
                "Resuming after the start of quantization-aware training: preparing the model with %s",
                type(self.quantizer).__name__,
            )
            self.prepare()
        load_component_state(self.quantizer, state.get("quantizer"))


def quantization_prepared(scheduler_state: Mapping[str, Any] | None) -> bool:
    """Whether a saved compression-scheduler state had a quantization policy that prepared the model.

    A run resumed from such a checkpoint must prepare the model again before loading its weights
    and optimizer state: build the optimizer on the float model, build the schedule with it
    (``file_config(model, optimizer, ...)``), ``scheduler.load_state_dict(state)`` (the quantization
    policy prepares the model and adds its optimizer groups), then load the model state dict and the
    optimizer state.
    """
    for entry in (scheduler_state or {}).get("policies") or []:
        if not isinstance(entry, Mapping):
            continue
        key = str(entry.get("key", ""))
        if key.startswith("QuantizationPolicy:") and (entry.get("state") or {}).get("prepared"):
            return True
    return False


# --- extensions ------------------------------------------------------------------------------------


class ExtensionPolicy(ScheduledTrainingPolicy):
    """Base class of schedule ``extensions`` (thinning ``FilterRemover``/``ChannelRemover`` later).

    An extension is itself a policy: the YAML ``extensions:`` section builds it through the
    ``EXTENSIONS`` registry and the policy entry schedules it as is. Subclasses override the hooks
    they need (thinning acts in ``on_epoch_begin``/``on_epoch_end``).
    """
