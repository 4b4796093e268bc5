"""Parameter masks: the state that makes pruning stick.

A :class:`Masker` owns the mask of one parameter plus the flags that say *when* the mask is
enforced (the original Distiller's ``ParameterMasker``). A :class:`MaskSet` is the dict of all
maskers of a model, keyed by canonical parameter names (the original's ``zeros_mask_dict``).

Why the mask is re-applied after every optimizer step (hard pruning, the default): masking the
weights before the forward pass and even masking the gradients is not enough, because SGD with
momentum and weight decay moves a zero weight away from zero through the momentum buffer and the
decay term. Only multiplying the weights by the mask *after* ``optimizer.step()`` keeps them at
exactly zero (Distiller issue #53).

Mask work must stay cheap (it runs every training step): every operation here is a single
in-place tensor op, never a Python loop over elements.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name

__all__ = ["Masker", "MaskSet"]


class Masker:
    """The mask of one parameter and the policy flags that control how it is enforced.

    Attributes:
        name: canonical parameter name (for messages and state dicts).
        mask: a tensor of the parameter's shape (usually 0/1, a DropFilter mask may be scaled), or
            ``None`` when the parameter is not masked.
        mask_on_forward_only: soft pruning. The mask is applied before the forward pass only; the
            optimizer may revive masked weights (Dynamic Network Surgery, DropFilter).
        use_double_copies: the loss is computed on masked weights but the optimizer updates the
            unmasked weights: :meth:`apply_mask` snapshots the unmasked values and
            :meth:`revert_weights` restores them just before ``optimizer.step()``.
        mask_gradients: multiply the gradient by the mask through a tensor hook. Only meaningful
            with ``mask_on_forward_only`` (with hard pruning the weights are re-masked anyway).
        is_regularization_mask: a one-shot mask set by a regularizer's ``threshold``; it is
            discarded after it has been applied once.
        unmasked_copy: the snapshot kept for ``use_double_copies``.
        backward_hook_handle: the handle of the gradient hook, when one is registered.
    """

    def __init__(self, name: str, mask: torch.Tensor | None = None) -> None:
        self.name = name
        self.mask: torch.Tensor | None = mask
        self.mask_on_forward_only = False
        self.use_double_copies = False
        self.mask_gradients = False
        self.is_regularization_mask = False
        self.unmasked_copy: torch.Tensor | None = None
        self.backward_hook_handle: torch.utils.hooks.RemovableHandle | None = None

    @property
    def param_name(self) -> str:
        """The original's attribute name for :attr:`name`."""
        return self.name

    def apply_mask(self, param: torch.Tensor) -> torch.Tensor:
        """Multiply ``param`` by the mask in place (no-op without a mask).

        With ``use_double_copies`` the unmasked values are snapshotted first, so
        :meth:`revert_weights` can hand them back to the optimizer. A regularization mask is
        dropped after this call (it is recomputed by the regularizer each time).
        """
        mask = self.mask
        if mask is None:
            return param
        if self.use_double_copies:
            self.unmasked_copy = param.detach().clone()
        with torch.no_grad():
            param.mul_(mask)
        if self.is_regularization_mask:
            self.mask = None
        return param

    mask_tensor = apply_mask  # the name later versions of the original use

    def mask_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """The gradient with masked elements zeroed (used as a tensor backward hook)."""
        mask = self.mask
        if mask is None:
            return grad
        return grad.mul(mask)

    def revert_weights(self, param: torch.Tensor) -> None:
        """Restore the unmasked copy into ``param`` (in place), for ``use_double_copies``.

        Called before ``optimizer.step()`` so the update computed from the masked-weight loss is
        applied to the unmasked weights: ``W_{i+1} = W_i - lr * dW``. In-place copy keeps the
        parameter object (and so the optimizer's state) the same.
        """
        if self.mask is None or not self.use_double_copies or self.unmasked_copy is None:
            return
        with torch.no_grad():
            param.copy_(self.unmasked_copy)

    remove_mask = revert_weights  # the name older versions of the original use

    def set_gradient_hook(self, param: torch.Tensor) -> None:
        """Register :meth:`mask_gradient` as a backward hook of ``param`` (once).

        Raises:
            ConfigError: with hard pruning (``mask_on_forward_only`` false), as in the original:
                the weights are re-masked after the step anyway, so gradient masking would only
                hide a configuration mistake.
        """
        if not self.mask_on_forward_only:
            raise ConfigError(
                f"mask_gradients needs mask_on_forward_only (parameter {self.name!r}): with hard pruning the "
                "weights are re-masked after every step. Set mask_on_forward_only: True or drop mask_gradients."
            )
        self.mask_gradients = True
        if self.backward_hook_handle is None:
            self.backward_hook_handle = param.register_hook(self.mask_gradient)

    def remove_gradient_hook(self) -> None:
        """Remove the gradient hook, if any."""
        if self.backward_hook_handle is not None:
            self.backward_hook_handle.remove()
            self.backward_hook_handle = None
        self.mask_gradients = False

    def __repr__(self) -> str:
        shape = None if self.mask is None else tuple(self.mask.shape)
        flags = [
            f
            for f in ("mask_on_forward_only", "use_double_copies", "mask_gradients", "is_regularization_mask")
            if getattr(self, f)
        ]
        return f"Masker({self.name!r}, mask={shape}{', ' + ', '.join(flags) if flags else ''})"


class MaskSet(dict):
    """All maskers of a model, keyed by canonical parameter name (the original's ``zeros_mask_dict``).

    Lookups accept ``module.``-prefixed names (DataParallel/DDP), so code written for the
    original, which indexed with the wrapped names, keeps working.
    """

    @classmethod
    def for_model(cls, model: nn.Module) -> MaskSet:
        """One empty :class:`Masker` per named parameter of ``model``."""
        masks = cls()
        for name, _ in model.named_parameters():
            key = normalize_module_name(name)
            masks[key] = Masker(key)
        return masks

    def __getitem__(self, name: str) -> Masker:
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            key = normalize_module_name(name)
            if key != name and dict.__contains__(self, key):
                return dict.__getitem__(self, key)
            raise

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        return isinstance(name, str) and dict.__contains__(self, normalize_module_name(name))

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default

    def _named_maskers(self, model: nn.Module) -> Iterator[tuple[torch.nn.Parameter, Masker]]:
        for name, param in model.named_parameters():
            masker = self.get(name)
            if masker is not None:
                yield param, masker

    def apply(self, model: nn.Module, is_forward: bool = True) -> None:
        """Apply every mask to the model's parameters, in place.

        Args:
            model: the model whose parameters are masked (wrapped or not).
            is_forward: ``False`` after the optimizer step: maskers with ``mask_on_forward_only``
                are skipped there, which is what lets soft pruning revive weights.
        """
        for param, masker in self._named_maskers(model):
            if masker.mask is not None and (is_forward or not masker.mask_on_forward_only):
                masker.apply_mask(param)

    def revert_weights(self, model: nn.Module) -> None:
        """Restore the unmasked copies of every double-copy masker (before ``optimizer.step()``)."""
        for param, masker in self._named_maskers(model):
            masker.revert_weights(param)

    def masked(self) -> dict[str, torch.Tensor]:
        """``{name: mask}`` for the parameters that have a mask."""
        return {name: m.mask for name, m in self.items() if m.mask is not None}

    def state_dict(self) -> dict[str, dict[str, torch.Tensor | None]]:
        """``{"masks_dict": {name: mask or None}}``: the original scheduler's state format."""
        return {"masks_dict": {name: masker.mask for name, masker in self.items()}}

    def load_state_dict(self, state: Mapping[str, Any], *, strict: bool = False) -> None:
        """Load masks saved by :meth:`state_dict` (or by the original Distiller).

        Names may carry ``module.`` elements. Masks are moved to the device of the mask they
        replace when there is one. A name unknown to this set is added (a masker is cheap), unless
        ``strict``, where it raises.

        Raises:
            ConfigError: ``masks_dict`` missing, or (``strict``) an unknown parameter name.
        """
        if "masks_dict" not in state:
            raise ConfigError(
                f"Not a masks state: it has no 'masks_dict' (keys: {', '.join(map(str, state)) or 'none'})."
            )
        for name, mask in state["masks_dict"].items():
            key = normalize_module_name(name)
            if key not in self:
                if strict:
                    raise ConfigError(f"Mask for unknown parameter {name!r}; the model has no such parameter.")
                self[key] = Masker(key)
            masker = dict.__getitem__(self, key)
            if mask is not None and masker.mask is not None:
                mask = mask.to(masker.mask.device)
            masker.mask = mask

    def to(self, device: torch.device | str) -> MaskSet:
        """Move every mask to ``device`` (in place); returns ``self``."""
        for masker in self.values():
            if masker.mask is not None:
                masker.mask = masker.mask.to(device)
        return self

    def names(self) -> Iterable[str]:
        return self.keys()
