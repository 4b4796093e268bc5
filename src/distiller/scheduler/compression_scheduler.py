"""The compression scheduler: calls policies at six points of training and owns the masks.

A training loop calls six hooks, with the original Distiller's signatures, so that any loop written
for Distiller keeps working::

    scheduler.on_epoch_begin(epoch, optimizer)
    for step, (x, y) in enumerate(loader):
        scheduler.on_minibatch_begin(epoch, step, steps_per_epoch, optimizer)
        loss = criterion(model(x), y)
        loss = scheduler.before_backward_pass(epoch, step, steps_per_epoch, loss, optimizer)
        optimizer.zero_grad(); loss.backward()
        scheduler.before_parameter_optimization(epoch, step, steps_per_epoch, optimizer)
        optimizer.step()
        scheduler.on_minibatch_end(epoch, step, steps_per_epoch, optimizer)
    scheduler.on_epoch_end(epoch, optimizer, metrics={"min": val_loss, "max": top1})

Policies fire in declaration order, except that LR policies fire after all others (the original
built them last so that they see an optimizer a quantizer may have changed; here the order holds
for programmatic schedules too). ``on_minibatch_end`` re-applies *every* mask after the optimizer
step, whether or not a pruning policy is active, because momentum and weight decay would otherwise
revive pruned weights (Distiller issue #53).

Step windows (new): a policy bound to ``starting_step``/``ending_step``/``step_frequency`` treats
each firing step as a one-minibatch "epoch": its ``on_epoch_begin`` runs just before its
``on_minibatch_begin`` and its ``on_epoch_end`` just after its ``on_minibatch_end``.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, ScheduleError
from distiller.naming import normalize_module_name
from distiller.scheduler.lr import is_plateau
from distiller.scheduler.masks import SchedulerMasks, masks_state, new_masks
from distiller.scheduler.policies import LossComponent, LRPolicy, PolicyLoss
from distiller.scheduler.state import plain_state
from distiller.scheduler.windows import Window, make_window

__all__ = ["STATE_VERSION", "CompressionScheduler", "ScheduledPolicy"]

logger = logging.getLogger(__name__)

STATE_VERSION = 2
"""1 = the original's ``{'masks_dict': ...}``; 2 adds ``policies`` (per-policy state)."""


@dataclass
class ScheduledPolicy:
    """A policy bound to its window, with the metadata dict passed to its hooks."""

    policy: Any
    window: Window
    name: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_lr(self) -> bool:
        return isinstance(self.policy, LRPolicy)

    @property
    def key(self) -> str:
        """Identity used to match saved policy state on resume."""
        return f"{type(self.policy).__name__}:{self.name}"


@functools.lru_cache(maxsize=512)
def _parameters_of(func: Any) -> tuple[frozenset[str], bool] | None:
    """Parameter names of ``func`` and whether it takes ``**kwargs`` (cached: hooks run every step)."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return None
    return frozenset(params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _accepted_kwargs(fn: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``fn`` accepts (user policies written for the original may
    declare ``on_epoch_end(self, model, zeros_mask_dict, meta)`` without ``**kwargs``)."""
    if not kwargs:
        return kwargs
    func = getattr(fn, "__func__", fn)
    try:
        info = _parameters_of(func)
    except TypeError:  # unhashable callable
        info = None
    if info is None:
        return kwargs
    names, var_kw = info
    return kwargs if var_kw else {k: v for k, v in kwargs.items() if k in names}


class CompressionScheduler:
    """Calls the compression policies at the right points of training and owns the masks.

    Args:
        model: the model being compressed.
        zeros_mask_dict: the masks (a :class:`~distiller.sparsity.MaskSet`); a new one with one
            empty masker per parameter by default. (For code written before this argument existed,
            a device passed in this position is taken as ``device``.)
        device: where masks live; defaults to the device of the model's first parameter.
    """

    def __init__(
        self,
        model: nn.Module,
        zeros_mask_dict: Mapping[str, Any] | torch.device | str | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(zeros_mask_dict, (torch.device, str)):
            zeros_mask_dict, device = None, zeros_mask_dict
        self.model = model
        if device is None:
            first = next(model.parameters(), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.masks: SchedulerMasks | Any = zeros_mask_dict if zeros_mask_dict is not None else new_masks(model)
        self.policies: dict[int, list[Any]] = {}  # epoch -> policies (the original's attribute)
        self.sched_metadata: dict[Any, dict[str, Any]] = {}  # policy -> meta (the original's attribute)
        self._entries: list[ScheduledPolicy] = []
        self._pending_state: list[Mapping[str, Any]] = []

    # --- building ------------------------------------------------------------------------------

    @property
    def zeros_mask_dict(self) -> Any:
        """The original's name for :attr:`masks`."""
        return self.masks

    @property
    def entries(self) -> list[ScheduledPolicy]:
        """The scheduled policies, in declaration order."""
        return list(self._entries)

    def add_policy(
        self,
        policy: Any,
        epochs: Iterable[int] | None = None,
        starting_epoch: int | None = None,
        ending_epoch: int | None = None,
        frequency: int | None = 1,
        starting_step: int | None = None,
        ending_step: int | None = None,
        step_frequency: int | None = None,
        *,
        name: str | None = None,
    ) -> ScheduledPolicy:
        """Schedule ``policy``: an ``epochs`` list, an epoch window or a step window.

        ``ending_epoch``/``ending_step`` are exclusive. For an ``epochs`` list the metadata is
        ``starting_epoch = first``, ``ending_epoch = last + 1``, ``frequency = None`` (as in the
        original).

        Raises:
            ScheduleError: no timing, mixed timing forms, invalid values, or ``ReduceLROnPlateau``
                in a step window (it needs epoch metrics).

        The same policy object may be scheduled in several windows (a schedule may run one
        extension at two epochs); each window is its own entry with its own metadata.
        """
        window = make_window(
            epochs, starting_epoch, ending_epoch, frequency, starting_step, ending_step, step_frequency
        )
        if window.unit == "step" and isinstance(policy, LRPolicy) and is_plateau(policy.lr_scheduler):
            raise ScheduleError(
                "ReduceLROnPlateau steps on validation metrics, which exist only at epoch ends. "
                "Fix: schedule it with starting_epoch/ending_epoch instead of a step window."
            )
        entry = ScheduledPolicy(policy, window, name or getattr(policy, "name", None) or type(policy).__name__)
        entry.meta.update(window.meta())
        self._entries.append(entry)
        self.sched_metadata[policy] = entry.meta
        if window.unit == "epoch":
            for epoch in window.firings():
                self.policies.setdefault(epoch, []).append(policy)
        index = len(self._entries) - 1
        if index < len(self._pending_state):
            self._restore_policy(entry, self._pending_state[index])
        return entry

    # --- which policies fire -------------------------------------------------------------------

    def _ordered(self, entries: Iterable[ScheduledPolicy]) -> list[ScheduledPolicy]:
        entries = list(entries)
        return [e for e in entries if not e.is_lr] + [e for e in entries if e.is_lr]

    def _epoch_entries(self, epoch: int) -> list[ScheduledPolicy]:
        return self._ordered(e for e in self._entries if e.window.unit == "epoch" and e.window.fires(epoch))

    def _step_entries(self, step: int) -> list[ScheduledPolicy]:
        return self._ordered(e for e in self._entries if e.window.unit == "step" and e.window.fires(step))

    def _minibatch_entries(self, epoch: int, step: int) -> list[ScheduledPolicy]:
        return self._ordered(
            e
            for e in self._entries
            if (e.window.unit == "epoch" and e.window.fires(epoch))
            or (e.window.unit == "step" and e.window.fires(step))
        )

    def policies_at(self, epoch: int) -> list[Any]:
        """The policies of epoch windows that fire at ``epoch``, in firing order."""
        return [e.policy for e in self._epoch_entries(epoch)]

    def _update_meta(self, entry: ScheduledPolicy, epoch: int, optimizer: Any, step: int | None = None) -> None:
        meta = entry.meta
        meta["current_epoch"] = epoch
        meta["model"] = self.model
        meta["optimizer"] = optimizer
        if step is not None:
            meta["current_step"] = step
        meta["is_last_firing"] = entry.window.is_last(epoch if step is None else step)

    # --- the six hooks -------------------------------------------------------------------------

    def on_epoch_begin(self, epoch: int, optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        """Called before the first minibatch of ``epoch``."""
        for entry in self._epoch_entries(epoch):
            self._update_meta(entry, epoch, optimizer)
            fn = entry.policy.on_epoch_begin
            fn(self.model, self.masks, entry.meta, **_accepted_kwargs(fn, kwargs))
        self._sync_lr_param_groups(optimizer)

    def on_minibatch_begin(
        self,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Called before the forward pass of a minibatch."""
        step = epoch * minibatches_per_epoch + minibatch_id
        for entry in self._step_entries(step):
            self._update_meta(entry, epoch, optimizer, step)
            entry.policy.on_epoch_begin(self.model, self.masks, entry.meta)
        for entry in self._minibatch_entries(epoch, step):
            if entry.window.unit == "epoch":
                self._update_meta(entry, epoch, optimizer)
            entry.policy.on_minibatch_begin(
                self.model, epoch, minibatch_id, minibatches_per_epoch, self.masks, entry.meta, optimizer
            )

    def before_backward_pass(
        self,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        loss: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        return_loss_components: bool = False,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor | PolicyLoss:
        """The loss to back-propagate: ``loss`` chained through the active policies.

        Each policy may return a :class:`PolicyLoss` that replaces the running loss; its components
        are collected in order. ``loss`` itself is never modified.

        Args:
            targets: the minibatch labels (new, optional); policies that need them (knowledge
                distillation with a teacher-vs-labels weight) receive them via ``observe_targets``.

        Returns:
            The overall loss, or a :class:`PolicyLoss` with the components when
            ``return_loss_components``.
        """
        step = epoch * minibatches_per_epoch + minibatch_id
        overall = loss
        components: list[LossComponent] = []
        for entry in self._minibatch_entries(epoch, step):
            if targets is not None and hasattr(entry.policy, "observe_targets"):
                entry.policy.observe_targets(targets)
            fn = entry.policy.before_backward_pass
            # the original called it without the optimizer; policies written for it may not take one
            result = fn(
                self.model,
                epoch,
                minibatch_id,
                minibatches_per_epoch,
                overall,
                self.masks,
                **_accepted_kwargs(fn, {"optimizer": optimizer}),
            )
            if result is not None:
                components += self.verify_policy_loss(result)
                overall = result.overall_loss
        if return_loss_components:
            return PolicyLoss(overall, components)
        return overall

    def before_parameter_optimization(
        self,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Called after the backward pass, before ``optimizer.step()``."""
        step = epoch * minibatches_per_epoch + minibatch_id
        for entry in self._minibatch_entries(epoch, step):
            entry.policy.before_parameter_optimization(
                self.model, epoch, minibatch_id, minibatches_per_epoch, self.masks, entry.meta, optimizer
            )

    def on_minibatch_end(
        self,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        """Called after ``optimizer.step()``: re-applies all masks, then the active policies run."""
        self.apply_mask(is_forward=False)
        step = epoch * minibatches_per_epoch + minibatch_id
        for entry in self._minibatch_entries(epoch, step):
            entry.policy.on_minibatch_end(self.model, epoch, minibatch_id, minibatches_per_epoch, self.masks, optimizer)
        for entry in self._step_entries(step):
            entry.meta["optimizer"] = optimizer
            entry.policy.on_epoch_end(self.model, self.masks, entry.meta)

    def on_epoch_end(self, epoch: int, optimizer: torch.optim.Optimizer | None = None, **kwargs: Any) -> None:
        """Called after validation; ``metrics={'min': val_loss, 'max': top1}`` feeds ReduceLROnPlateau."""
        for entry in self._epoch_entries(epoch):
            self._update_meta(entry, epoch, optimizer)
            fn = entry.policy.on_epoch_end
            fn(self.model, self.masks, entry.meta, **_accepted_kwargs(fn, kwargs))

    # --- masks ---------------------------------------------------------------------------------

    def _masker_for(self, name: str) -> Any:
        masker = self.masks.get(name) if hasattr(self.masks, "get") else None
        if masker is None:
            masker = self.masks.get(normalize_module_name(name))
        if masker is None:
            # A quantizer may keep the float weight as 'float_<name>' or wrap the module
            # ('<layer>.wrapped_module.weight'); the mask belongs to the original name.
            parts = name.split(".")
            if parts[-1].startswith("float_"):
                parts[-1] = parts[-1][len("float_") :]
            parts = [p for p in parts if p != "wrapped_module"]
            masker = self.masks.get(normalize_module_name(".".join(parts)))
        return masker

    @torch.no_grad()
    def apply_mask(self, is_forward: bool = True) -> None:
        """Multiply every masked parameter by its mask.

        Args:
            is_forward: ``False`` after the optimizer step, where soft-pruning maskers
                (``mask_on_forward_only``) are skipped so the optimizer may revive weights.
        """
        for name, param in self.model.named_parameters():
            masker = self._masker_for(name)
            if masker is None or masker.mask is None:
                continue
            if is_forward or not masker.mask_on_forward_only:
                masker.apply_mask(param)

    mask_all_weights = apply_mask  # the original's later name

    def apply_masks(self) -> None:
        """Apply every mask (forward semantics)."""
        self.apply_mask(is_forward=True)

    def _sync_lr_param_groups(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Give LR schedulers the param groups a quantizer added when it prepared the model.

        PyTorch schedulers keep one entry per group (``base_lrs``, ``_last_lr``; ``min_lrs`` of
        ``ReduceLROnPlateau``), fixed when they were built; a group added later gets entries here
        (its ``initial_lr`` is set by :func:`~distiller.quantization.quantizer.add_param_groups` so
        that it follows the first group's schedule).
        """
        for entry in self._entries:
            sched = getattr(entry.policy, "lr_scheduler", None) if entry.is_lr else None
            opt = getattr(sched, "optimizer", None)
            if opt is None:
                continue
            groups = opt.param_groups
            base = getattr(sched, "base_lrs", None)
            if isinstance(base, list) and len(base) < len(groups):
                for group in groups[len(base) :]:
                    group.setdefault("initial_lr", group["lr"])
                    base.append(group["initial_lr"])
            last = getattr(sched, "_last_lr", None)
            if isinstance(last, list) and len(last) < len(groups):
                last.extend(group["lr"] for group in groups[len(last) :])
            min_lrs = getattr(sched, "min_lrs", None)
            if isinstance(min_lrs, list) and min_lrs and len(min_lrs) < len(groups):
                min_lrs.extend([min_lrs[0]] * (len(groups) - len(min_lrs)))

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Masks and the state of every stateful policy (plain data and tensors only).

        The masks keep the original's key ``masks_dict`` so checkpoints stay readable by tools
        that know only that format.
        """
        return {
            "masks_dict": masks_state(self.masks),
            "policies": [
                {"key": e.key, "state": plain_state(e.policy.state_dict()) if hasattr(e.policy, "state_dict") else {}}
                for e in self._entries
            ],
            "version": STATE_VERSION,
        }

    def load_state_dict(self, state: Mapping[str, Any], normalize_dataparallel_keys: bool = False) -> None:
        """Restore masks (names with or without ``module.``) and policy state, and apply the masks.

        Policy states are matched to policies by position and type. States for policies not added
        yet are kept and restored when :meth:`add_policy` adds them, so the state may be loaded
        before or after the schedule is built. ``normalize_dataparallel_keys`` is accepted for
        compatibility; names are always normalized.

        Raises:
            ConfigError: ``state`` has no ``masks_dict``.
        """
        if not isinstance(state, Mapping) or "masks_dict" not in state:
            keys = ", ".join(map(str, state)) if isinstance(state, Mapping) else type(state).__name__
            raise ConfigError(f"Not a compression-scheduler state: no 'masks_dict' (got {keys or 'nothing'}).")
        masks = {normalize_module_name(k): v for k, v in (state["masks_dict"] or {}).items()}
        if hasattr(self.masks, "load_state_dict"):
            self.masks.load_state_dict({"masks_dict": masks})
        else:
            for name, mask in masks.items():
                if name in self.masks:
                    self.masks[name].mask = mask
        for masker in self.masks.values():
            if getattr(masker, "mask", None) is not None:
                masker.mask = masker.mask.to(self.device)
        self.apply_mask(is_forward=True)
        self._pending_state = list(state.get("policies") or [])
        for index, entry in enumerate(self._entries[: len(self._pending_state)]):
            self._restore_policy(entry, self._pending_state[index])
        self._sync_lr_param_groups()  # a restored quantization policy may have added param groups

    def _restore_policy(self, entry: ScheduledPolicy, saved: Mapping[str, Any]) -> None:
        key = saved.get("key") if isinstance(saved, Mapping) else None
        if key is not None and key != entry.key:
            logger.warning(
                "Scheduler state for policy %r does not match the scheduled policy %r; not restored "
                "(was the schedule changed since the checkpoint?)",
                key,
                entry.key,
            )
            return
        if hasattr(entry.policy, "load_state_dict") and isinstance(saved, Mapping):
            entry.policy.load_state_dict(saved.get("state") or {})

    @staticmethod
    def verify_policy_loss(policy_loss: Any) -> list[LossComponent]:
        """The loss components of a policy's ``before_backward_pass`` result, type-checked."""
        if not (hasattr(policy_loss, "overall_loss") and hasattr(policy_loss, "loss_components")):
            raise TypeError(
                f"A policy's before_backward_pass must return None or a PolicyLoss, got {type(policy_loss).__name__}"
            )
        comps = policy_loss.loss_components
        if comps is None:
            return []
        if isinstance(comps, LossComponent) or not isinstance(comps, (list, tuple)):
            comps = [comps]
        out = []
        for c in comps:
            if isinstance(c, LossComponent):
                out.append(c)
            elif hasattr(c, "name") and hasattr(c, "value"):
                out.append(LossComponent(c.name, c.value))
            else:
                raise TypeError(f"Expected LossComponent instances, got {type(c).__name__}")
        return out

    def __repr__(self) -> str:
        body = ", ".join(f"{e.name} @ {e.window.describe()}" for e in self._entries)
        return f"CompressionScheduler({type(self.model).__name__}, [{body}])"
