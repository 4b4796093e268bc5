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
    "PruningPolicy",
    "QuantizationPolicy",
    "RegularizationPolicy",
    "ScheduledTrainingPolicy",
    "is_last_firing",
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


def _component_state(component: Any) -> dict[str, Any]:
    fn = getattr(component, "state_dict", None)
    return plain_state(fn()) if callable(fn) else {}


def _load_component_state(component: Any, state: Mapping[str, Any] | None) -> None:
    fn = getattr(component, "load_state_dict", None)
    if state and callable(fn):
        fn(state)


# --- pruning ---------------------------------------------------------------------------------------

_PRUNING_ARGS: dict[str, type | tuple[type, ...]] = {
    "levels": dict,
    "keep_mask": bool,
    "mini_batch_pruning_frequency": int,
    "mask_on_forward_only": bool,
    "mask_gradients": bool,
    "use_double_copies": bool,
    "discard_masks_at_minibatch_end": bool,
    "skip_first_minibatch": bool,
    "fold_batchnorm": bool,
}


def _check_pruning_args(args: Mapping[str, Any]) -> None:
    from distiller.registry import did_you_mean

    for key, value in args.items():
        if key not in _PRUNING_ARGS:
            raise ConfigError(
                f"Unknown pruning-policy argument {key!r}.{did_you_mean(str(key), list(_PRUNING_ARGS))} "
                f"Fix: use one of {', '.join(_PRUNING_ARGS)}."
            )
        expected = _PRUNING_ARGS[key]
        if value is None:
            continue
        if isinstance(value, bool) and expected is int or not isinstance(value, expected):
            raise ConfigError(
                f"Pruning-policy argument {key!r} must be {getattr(expected, '__name__', expected)}, got {value!r}."
            )
    if args.get("mini_batch_pruning_frequency", 0) and args["mini_batch_pruning_frequency"] < 0:
        raise ConfigError("'mini_batch_pruning_frequency' must be >= 0 (0 = prune only at epoch begin).")
    if args.get("mask_gradients") and not args.get("mask_on_forward_only"):
        raise ConfigError(
            "'mask_gradients' needs 'mask_on_forward_only: True' (with hard pruning the weights are re-masked "
            "after every step anyway). Fix: add mask_on_forward_only: True, or drop mask_gradients."
        )


def _following_batchnorm(model: nn.Module) -> dict[str, nn.BatchNorm2d]:
    """``{conv module name: BatchNorm2d}`` for each Conv2d directly followed by a matching BN.

    "Followed" means the next module in ``named_modules()`` order, which is how layers are declared
    in almost every CNN. The graph issue replaces this with real data-flow successors.
    """
    mods = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    pairs: dict[str, nn.BatchNorm2d] = {}
    for (name, mod), (_, nxt) in zip(mods, mods[1:]):
        if (
            isinstance(mod, nn.Conv2d)
            and isinstance(nxt, nn.BatchNorm2d)
            and nxt.num_features == mod.out_channels
            and nxt.running_var is not None
        ):
            pairs[normalize_module_name(name)] = nxt
    return pairs


def _fold_batchnorm(param: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Conv weights scaled as in inference BN folding: ``w * gamma / sqrt(running_var + eps)``."""
    with torch.no_grad():
        gamma = bn.weight if bn.affine and bn.weight is not None else torch.ones_like(bn.running_var)
        scale = gamma / torch.sqrt(bn.running_var + bn.eps)
        return param * scale.view(-1, 1, 1, 1)


class PruningPolicy(ScheduledTrainingPolicy):
    """Calls a pruner to set masks at scheduled epochs and enforces the masks.

    Args:
        pruner: any object with ``set_param_mask(param, name, zeros_mask_dict, meta)``.
        pruner_args: the policy ``args`` of the YAML: ``levels`` (overrides the pruner's),
            ``keep_mask``, ``mini_batch_pruning_frequency`` (also prune every N global minibatches),
            ``mask_on_forward_only`` (soft pruning), ``mask_gradients``, ``use_double_copies``,
            ``discard_masks_at_minibatch_end``, ``skip_first_minibatch``, ``fold_batchnorm`` (rank
            Conv2d weights with the following BatchNorm2d folded in).

    Raises:
        ConfigError: unknown or mistyped args; ``mask_gradients`` without ``mask_on_forward_only``.
    """

    def __init__(
        self, pruner: Any, pruner_args: Mapping[str, Any] | None = None, classes: Any = None, layers: Any = None
    ) -> None:
        super().__init__(classes, layers)
        self.pruner = pruner
        args = dict(pruner_args or {})
        _check_pruning_args(args)
        self.levels = args.get("levels")
        self.keep_mask = bool(args.get("keep_mask", False))
        self.mini_batch_pruning_frequency = int(args.get("mini_batch_pruning_frequency") or 0)
        self.mask_on_forward_only = bool(args.get("mask_on_forward_only", False))
        self.mask_gradients = bool(args.get("mask_gradients", False))
        self.use_double_copies = bool(args.get("use_double_copies", False))
        self.discard_masks_at_minibatch_end = bool(args.get("discard_masks_at_minibatch_end", False))
        self.skip_first_minibatch = bool(args.get("skip_first_minibatch", False))
        self.fold_bn = bool(args.get("fold_batchnorm", False))
        self.is_last_epoch = False
        self.is_initialized = False  # persisted: the first firing happened (skip_first_minibatch)
        self._maskers_ready = False  # per process: masker flags and gradient hooks are set
        self._bn: dict[str, nn.BatchNorm2d] = {}
        self._meta: dict[str, Any] = {}

    def _targets(self, name: str) -> bool:
        supported = getattr(self.pruner, "is_supported", None)
        return bool(supported(name)) if callable(supported) else True

    def _ranked_tensor(self, name: str, param: torch.Tensor) -> torch.Tensor:
        if not self.fold_bn:
            return param
        bn = self._bn.get(name.rsplit(".", 1)[0]) if name.endswith(".weight") else None
        return _fold_batchnorm(param, bn) if bn is not None and param.dim() == 4 else param

    def _set_masks(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any]) -> None:
        for raw_name, param in model.named_parameters():
            name = normalize_module_name(raw_name)
            self.pruner.set_param_mask(self._ranked_tensor(name, param), name, zeros_mask_dict, meta)

    def _configure_maskers(self, model: nn.Module, zeros_mask_dict: Any) -> None:
        for raw_name, param in model.named_parameters():
            name = normalize_module_name(raw_name)
            if name not in zeros_mask_dict or not self._targets(name):
                continue
            masker = zeros_mask_dict[name]
            masker.use_double_copies = self.use_double_copies
            masker.mask_on_forward_only = self.mask_on_forward_only
            if self.mask_gradients:
                masker.set_gradient_hook(param)
        self._maskers_ready = True

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.is_last_epoch = is_last_firing(meta)
        if self.levels is not None:
            self.pruner.levels = self.levels
        meta["model"] = model
        self._meta = meta
        if self.fold_bn:
            self._bn = _following_batchnorm(model)
        if not self._maskers_ready:
            self._configure_maskers(model, zeros_mask_dict)
        first = not self.is_initialized
        self.is_initialized = True
        if first and self.skip_first_minibatch:
            return
        self._set_masks(model, zeros_mask_dict, meta)

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
        global_step = epoch * minibatches_per_epoch + minibatch_id
        set_masks = (
            minibatch_id > 0
            and self.mini_batch_pruning_frequency != 0
            and global_step % self.mini_batch_pruning_frequency == 0
        )
        if self.skip_first_minibatch and global_step == 1:
            set_masks = True  # the first minibatch of the run was skipped (global step 0)
        if set_masks:
            self._set_masks(model, zeros_mask_dict, meta)
        for raw_name, param in model.named_parameters():
            masker = zeros_mask_dict.get(raw_name) if hasattr(zeros_mask_dict, "get") else None
            if masker is not None:
                masker.apply_mask(param)

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
        if not self.use_double_copies:
            return
        for raw_name, param in model.named_parameters():
            masker = zeros_mask_dict.get(raw_name)
            if masker is not None:
                masker.revert_weights(param)

    def on_minibatch_end(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        if not self.discard_masks_at_minibatch_end:
            return
        for raw_name, _ in model.named_parameters():
            name = normalize_module_name(raw_name)
            if name in zeros_mask_dict and self._targets(name):
                zeros_mask_dict[name].mask = None

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        if not self.is_last_epoch:
            return
        for raw_name, param in model.named_parameters():
            name = normalize_module_name(raw_name)
            if name not in zeros_mask_dict or not self._targets(name):
                continue
            masker = zeros_mask_dict[name]
            if self.keep_mask:
                masker.use_double_copies = False
                masker.mask_on_forward_only = False
                masker.apply_mask(param)
            if getattr(masker, "backward_hook_handle", None) is not None:
                masker.remove_gradient_hook()

    def state_dict(self) -> dict[str, Any]:
        return {"is_initialized": self.is_initialized, "pruner": _component_state(self.pruner)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.is_initialized = bool(state.get("is_initialized", self.is_initialized))
        _load_component_state(self.pruner, state.get("pruner"))


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

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.is_last_epoch = is_last_firing(meta)
        self._step_window = "current_step" in meta

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
        return {"regularizer": _component_state(self.regularizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _load_component_state(self.regularizer, state.get("regularizer"))


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
        return {"lr_scheduler": _component_state(self.lr_scheduler)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _load_component_state(self.lr_scheduler, state.get("lr_scheduler"))
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
    parsed, so merely validating a schedule transformed the model. Here preparation waits for the
    first scheduled epoch (the quantization issue adds the rest of the quantizer interface).
    """

    def __init__(self, quantizer: Any) -> None:
        super().__init__()
        self.quantizer = quantizer
        self.prepared = False

    def prepare(self) -> None:
        """Prepare the model now (idempotent); also called by the first firing."""
        if self.prepared:
            return
        self.quantizer.prepare_model()
        self.quantizer.quantize_params()
        self.prepared = True

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.prepare()

    def on_minibatch_end(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        self.quantizer.quantize_params()

    def state_dict(self) -> dict[str, Any]:
        return {"quantizer": _component_state(self.quantizer)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        _load_component_state(self.quantizer, state.get("quantizer"))


# --- extensions ------------------------------------------------------------------------------------


class ExtensionPolicy(ScheduledTrainingPolicy):
    """Base class of schedule ``extensions`` (thinning ``FilterRemover``/``ChannelRemover`` later).

    An extension is itself a policy: the YAML ``extensions:`` section builds it through the
    ``EXTENSIONS`` registry and the policy entry schedules it as is. Subclasses override the hooks
    they need (thinning acts in ``on_epoch_begin``/``on_epoch_end``).
    """
