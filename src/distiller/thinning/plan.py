"""Thinning plans: which slices of which tensors a thinned model keeps, as plain data.

A plan is an ordered list of :class:`TensorSlice` directives ("keep these indices along this dim of
this tensor"). It holds names and integers only, so it can be saved in a checkpoint
(:meth:`ThinningPlan.to_dict`) and replayed on a freshly built dense model of the same architecture
to recreate the thinned layer shapes before its weights are loaded. Module attributes
(``out_channels``, ``num_features``, ...) are derived from the new shapes, not stored.

Plans are made by graph-based thinning (from masks) or imported from the original Distiller's
``ThinningRecipe`` (:meth:`ThinningPlan.from_legacy_recipe`).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, ModelError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean
from distiller.thinning.module_shapes import derive_module_attributes, module_tensor_shapes, sync_module_attributes

PLAN_FORMAT = "distiller-nn/thinning-plan/1"
APPLIED_PLANS_ATTR = "thinning_plans"
"""Model attribute that lists the plans applied to it, so a later checkpoint can save them."""


@dataclass(frozen=True)
class TensorSlice:
    """Keep only the indices ``keep`` along ``dim`` of the parameter or buffer named ``tensor``.

    ``view``/``reshape`` serve tensors whose sliced dimension only exists in a reshaped view: the
    weight of a Linear layer after a flatten has ``C*H*W`` inputs, and removing channel ``c`` of the
    conv before it removes ``H*W`` of them. Such a slice views the weight as ``(out, C, H, W)``,
    selects along dim 1 and reshapes back to ``(out, -1)``.
    """

    tensor: str
    dim: int
    keep: tuple[int, ...]
    view: tuple[int, ...] | None = None
    reshape: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep", _int_tuple(self.keep))  # accept lists and index tensors
        for name in ("view", "reshape"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, _int_tuple(getattr(self, name)))
        if not self.keep:
            raise ConfigError(f"A thinning slice of {self.tensor!r} must keep at least one index.")
        if min(self.keep) < 0 or len(set(self.keep)) != len(self.keep):
            raise ConfigError(f"The kept indices of {self.tensor!r} must be distinct and non-negative.")
        if (self.view is None) != (self.reshape is None):
            raise ConfigError(f"A thinning slice of {self.tensor!r} needs both 'view' and 'reshape', or neither.")

    def apply_to(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sliced copy of ``tensor`` (works on ``meta`` tensors, to check a plan without data)."""
        try:
            src = tensor if self.view is None else tensor.reshape(self.view)
        except RuntimeError as e:
            raise ModelError(f"Cannot view {self.tensor} of shape {tuple(tensor.shape)} as {self.view}: {e}") from None
        if not -src.dim() <= self.dim < src.dim():
            raise ModelError(f"Cannot slice dim {self.dim} of {self.tensor}, which has shape {tuple(src.shape)}.")
        size = src.shape[self.dim]
        if max(self.keep) >= size:
            raise ModelError(
                f"Thinning keeps index {max(self.keep)} of dim {self.dim} of {self.tensor}, which has only {size}; "
                "the plan was made for a larger model (or was already applied)."
            )
        index = torch.tensor(self.keep, dtype=torch.long, device=src.device)
        out = src.index_select(self.dim, index)
        if self.reshape is not None:
            try:
                out = out.reshape(self.reshape)
            except RuntimeError as e:
                raise ModelError(f"Cannot reshape the sliced {self.tensor} to {self.reshape}: {e}") from None
        return out

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"tensor": self.tensor, "dim": self.dim, "keep": list(self.keep)}
        if self.view is not None:
            data["view"], data["reshape"] = list(self.view), list(self.reshape or ())
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSlice:
        try:
            return cls(str(data["tensor"]), int(data["dim"]), data["keep"], data.get("view"), data.get("reshape"))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"Malformed thinning slice {dict(data)!r}: {e!r}") from None


def _int_tuple(values: Any) -> tuple[int, ...]:
    """Indices given as a list, tuple or (index) tensor, as a tuple of ints."""
    if isinstance(values, torch.Tensor):
        return tuple(int(v) for v in values.flatten().tolist())
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise TypeError(f"expected a list of integers, got {type(values).__name__}")
    return tuple(int(v) for v in values)


@dataclass(frozen=True)
class TensorShift:
    """Add ``values`` to the 1-D tensor ``tensor`` before slicing: the contribution of removed channels
    that carried a constant, folded into a consumer's bias (or subtracted from a BatchNorm's mean)."""

    tensor: str
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "values": list(self.values)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorShift:
        try:
            return cls(str(data["tensor"]), tuple(float(v) for v in data["values"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"Malformed thinning shift {dict(data)!r}: {e!r}") from None


@dataclass
class ThinningPlan:
    """An ordered list of tensor slices that turns a dense model into a thinned one.

    Shifts (folded constants) apply first, then slices in order, each to the tensor as the previous
    ones left it. Tensor names are canonical (no ``module.`` element from DataParallel/DDP).
    """

    slices: list[TensorSlice] = field(default_factory=list)
    shifts: list[TensorShift] = field(default_factory=list)

    def add(
        self,
        tensor: str,
        dim: int,
        keep: Sequence[int] | torch.Tensor,
        *,
        view: Sequence[int] | None = None,
        reshape: Sequence[int] | None = None,
    ) -> ThinningPlan:
        """Append a slice; returns the plan, so calls chain."""
        self.slices.append(TensorSlice(normalize_module_name(tensor), int(dim), keep, view, reshape))
        return self

    def __len__(self) -> int:
        return len(self.slices)

    @property
    def tensor_names(self) -> list[str]:
        """Names of the sliced tensors, in first-use order."""
        return list(dict.fromkeys(s.tensor for s in self.slices))

    # --- plain data ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, ints and strings only: safe to save, loadable with ``weights_only=True``."""
        data: dict[str, Any] = {"format": PLAN_FORMAT, "slices": [s.to_dict() for s in self.slices]}
        if self.shifts:
            data["shifts"] = [s.to_dict() for s in self.shifts]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThinningPlan:
        """Inverse of :meth:`to_dict`. Raises :class:`ConfigError` on malformed data."""
        if not isinstance(data, Mapping) or not isinstance(data.get("slices"), list):
            raise ConfigError(f"A thinning plan must be a dict with a 'slices' list, got {type(data).__name__}.")
        fmt = data.get("format", PLAN_FORMAT)
        if fmt != PLAN_FORMAT:
            raise ConfigError(f"Unsupported thinning-plan format {fmt!r} (this version reads {PLAN_FORMAT!r}).")
        shifts = data.get("shifts") or []
        if not isinstance(shifts, list):
            raise ConfigError("The 'shifts' of a thinning plan must be a list.")
        return cls([TensorSlice.from_dict(s) for s in data["slices"]], [TensorShift.from_dict(s) for s in shifts])

    @classmethod
    def from_legacy_recipe(cls, recipe: Any) -> ThinningPlan:
        """Convert the original Distiller's ``ThinningRecipe(modules, parameters)``.

        ``modules`` maps a module name to attributes: ``(dim, indices)`` values slice that module's
        buffers (BN running stats); plain values (``out_channels``, ``num_features``) are dropped,
        since :meth:`apply` derives them from the shapes (and the original sometimes set them wrong).
        ``parameters`` maps a parameter name to ``(dim, indices)`` or ``(dim, indices, view, reshape)``.
        """
        modules, parameters = (recipe.modules, recipe.parameters) if hasattr(recipe, "modules") else recipe
        plan = cls()
        for module_name, attrs in modules.items():
            for attr, value in attrs.items():
                if isinstance(value, tuple | list) and len(value) == 2:
                    plan.add(f"{module_name}.{attr}", value[0], value[1])
        for param_name, directives in parameters.items():
            for directive in directives:
                view, reshape = (directive[2], directive[3]) if len(directive) == 4 else (None, None)
                plan.add(param_name, directive[0], directive[1], view=view, reshape=reshape)
        return plan

    # --- applying --------------------------------------------------------------------------------

    def apply(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        masks: MutableMapping[str, torch.Tensor | None] | None = None,
        *,
        record: bool = True,
    ) -> nn.Module:
        """Physically shrink ``model`` (in place) and return it.

        Slices parameters (keeping the ``nn.Parameter`` objects, so optimizers still hold them),
        their ``.grad``, buffers, the optimizer's per-parameter state (momentum, Adam moments) and
        ``masks`` ({param name: mask}); then updates module attributes from the new shapes. The whole
        plan is checked on shapes first, so a plan that does not fit raises :class:`ModelError` and
        leaves everything untouched. With ``record``, the plan is appended to ``model.thinning_plans``
        so that a checkpoint saved later can rebuild the shapes.
        """
        targets = _tensor_table(model)
        self._check(targets)
        mask_keys = {normalize_module_name(k): k for k in masks} if masks is not None else {}
        touched: dict[str, nn.Module] = {}
        with torch.no_grad():
            for shift in self.shifts:
                _, module, attr = targets[shift.tensor]
                tensor = getattr(module, attr)
                tensor.add_(torch.tensor(shift.values, dtype=tensor.dtype, device=tensor.device))
            for s in self.slices:
                module_name, module, attr = targets[s.tensor]
                current = getattr(module, attr)
                old_shape = current.shape
                if isinstance(current, nn.Parameter):
                    grad = current.grad
                    current.data = s.apply_to(current.data)
                    if grad is not None:
                        current.grad = s.apply_to(grad)
                    if optimizer is not None:
                        _shrink_optimizer_state(optimizer, current, old_shape, s)
                else:
                    setattr(module, attr, s.apply_to(current))
                if masks is not None and s.tensor in mask_keys:
                    _shrink_mask(masks, mask_keys[s.tensor], old_shape, s)
                touched[module_name] = module
        for module_name, module in touched.items():
            sync_module_attributes(module, module_name)
        if record:
            applied = getattr(model, APPLIED_PLANS_ATTR, None)
            if not isinstance(applied, list):
                applied = []
                setattr(model, APPLIED_PLANS_ATTR, applied)
            applied.append(self)
        return model

    def _check(self, targets: dict[str, tuple[str, nn.Module, str]]) -> None:
        """Simulate the plan on ``meta`` tensors; raise before anything is changed."""
        for shift in self.shifts:
            if shift.tensor not in targets:
                raise ModelError(f"The thinning plan shifts {shift.tensor!r}, which the model does not have.")
            _, module, attr = targets[shift.tensor]
            if tuple(getattr(module, attr).shape) != (len(shift.values),):
                raise ModelError(
                    f"The thinning plan shifts {shift.tensor} by {len(shift.values)} values, but it has shape "
                    f"{tuple(getattr(module, attr).shape)}; the plan was made for another model."
                )
        shapes: dict[str, torch.Size] = {}
        for s in self.slices:
            if s.tensor not in targets:
                raise ModelError(
                    f"The thinning plan slices {s.tensor!r}, which the model does not have."
                    f"{did_you_mean(s.tensor, list(targets))} The plan was made for another architecture."
                )
            module_name, module, attr = targets[s.tensor]
            shape = shapes.get(s.tensor, getattr(module, attr).shape)
            shapes[s.tensor] = s.apply_to(torch.empty(shape, device="meta")).shape
        modules = {targets[name][0]: targets[name][1] for name in shapes}
        for module_name, module in modules.items():
            simulated = module_tensor_shapes(module)
            simulated.update({targets[k][2]: v for k, v in shapes.items() if targets[k][0] == module_name})
            derive_module_attributes(module, module_name, simulated)


def _tensor_table(model: nn.Module) -> dict[str, tuple[str, nn.Module, str]]:
    """Canonical tensor name -> (canonical module name, module, attribute), for parameters and buffers."""
    table: dict[str, tuple[str, nn.Module, str]] = {}
    for module_name, module in model.named_modules():
        canonical = normalize_module_name(module_name)
        prefix = f"{canonical}." if canonical else ""
        for attr, _ in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            table[prefix + attr] = (canonical, module, attr)
    return table


def _shrink_mask(masks: MutableMapping[str, Any], key: str, old_shape: torch.Size, s: TensorSlice) -> None:
    """Slice a mask given as a tensor or as a masker (``.mask``, and a double copy if it keeps one)."""
    value = masks[key]
    if isinstance(value, torch.Tensor) or value is None:
        if value is not None and value.shape == old_shape:
            masks[key] = s.apply_to(value)
        return
    for attr in ("mask", "unmasked_copy"):
        tensor = getattr(value, attr, None)
        if isinstance(tensor, torch.Tensor) and tensor.shape == old_shape:
            setattr(value, attr, s.apply_to(tensor))


def _shrink_optimizer_state(
    optimizer: torch.optim.Optimizer, param: nn.Parameter, old_shape: torch.Size, s: TensorSlice
) -> None:
    """Slice the state tensors of ``param`` that are shaped like it; scalars (``step``) stay."""
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.dim() == 0:
            continue
        if value.shape != old_shape:
            raise ModelError(
                f"Cannot thin the {type(optimizer).__name__} state {key!r} of {s.tensor}: its shape "
                f"{tuple(value.shape)} differs from the parameter's {tuple(old_shape)}."
            )
        state[key] = s.apply_to(value)


def applied_thinning_plans(model: nn.Module) -> list[ThinningPlan]:
    """The plans applied to ``model`` (or to the model wrapped by DataParallel/DDP), oldest first."""
    for candidate in (model, getattr(model, "module", None)):
        plans = getattr(candidate, APPLIED_PLANS_ATTR, None)
        if isinstance(plans, list) and plans:
            return list(plans)
    return []
