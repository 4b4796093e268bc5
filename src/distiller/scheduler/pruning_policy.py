"""The pruning policy: a pruner's masks set at scheduled epochs, with the original's fine control.

Fine-control arguments (the YAML policy ``args``, reference §1.1): ``levels``, ``keep_mask``,
``mini_batch_pruning_frequency``, ``mask_on_forward_only``, ``mask_gradients``,
``use_double_copies``, ``discard_masks_at_minibatch_end``, ``skip_first_minibatch``,
``fold_batchnorm``. Unlike the original, an unknown or mistyped argument is an error, and the
masker flags are set only on the parameters the pruner is configured for (the original set them on
every parameter, so two pruning policies with different flags overrode each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean
from distiller.scheduler.policies import (
    ScheduledTrainingPolicy,
    component_state,
    is_last_firing,
    load_component_state,
)

__all__ = ["PruningPolicy"]


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
        self._masks_pending = True  # masks not yet applied since they were (re)computed or loaded
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
        self._masks_pending = True
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
        # Hard masks were re-applied after the previous optimizer step (on_minibatch_end), so only new
        # masks, soft (forward-only) masks and double copies (which snapshot the unmasked weights) need
        # work here; skipping the rest keeps masking off the hot path.
        pending, self._masks_pending = self._masks_pending, False
        for raw_name, param in model.named_parameters():
            masker = zeros_mask_dict.get(raw_name) if hasattr(zeros_mask_dict, "get") else None
            if masker is not None and (pending or masker.mask_on_forward_only or masker.use_double_copies):
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
        return {"is_initialized": self.is_initialized, "pruner": component_state(self.pruner)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.is_initialized = bool(state.get("is_initialized", self.is_initialized))
        load_component_state(self.pruner, state.get("pruner"))
