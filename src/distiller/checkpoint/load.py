"""Loading checkpoints into a model: architecture check, thinning and low-rank factorizations replayed first,
clear mismatches."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.checkpoint.legacy import LEGACY_FORMAT
from distiller.checkpoint.read import read_checkpoint
from distiller.errors import CheckpointError, DistillerError
from distiller.low_rank.record import DecompositionRecord, replay_decompositions
from distiller.naming import normalize_module_name
from distiller.thinning.plan import ThinningPlan

_OPTIONAL_KEYS = ("num_batches_tracked",)
"""Buffers that original checkpoints (PyTorch < 0.4.1) lack; the model keeps its own value."""


@dataclass
class LoadedCheckpoint:
    """What :func:`load_checkpoint` restored into the model, and the state the caller restores itself."""

    model: nn.Module
    epoch: int | None
    start_epoch: int
    arch: str | None
    dataset: str | None
    extras: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    optimizer_type: str | None
    scheduler_state: dict[str, Any] | None
    thinning_plans: list[ThinningPlan]
    quantizer_metadata: dict[str, Any] | None
    rng_state: dict[str, Any] | None
    legacy: bool
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)

    @property
    def masks(self) -> dict[str, torch.Tensor | None]:
        """The scheduler's ``masks_dict`` (canonical names), or an empty dict."""
        return dict((self.scheduler_state or {}).get("masks_dict") or {})


def _model_arch(model: nn.Module) -> str | None:
    for candidate in (model, getattr(model, "module", None)):
        arch = getattr(candidate, "arch", None)
        if isinstance(arch, str):
            return arch
    return None


def _check_arch(path: Path, ckpt: Mapping[str, Any], model: nn.Module) -> None:
    arch, model_arch = ckpt.get("arch"), _model_arch(model)
    if arch and model_arch and arch != model_arch:
        raise CheckpointError(
            f"Checkpoint {str(path)!r} is of architecture {arch!r}, but the model is {model_arch!r}. "
            f"Build the model with --arch {arch}, or load another checkpoint."
        )


def _replay_low_rank(path: Path, ckpt: Mapping[str, Any], model: nn.Module, plans_done: int, last: bool) -> None:
    """Factorize the layers factorized after ``plans_done`` thinning plans (and all later ones if ``last``)."""
    records = [DecompositionRecord.from_dict(r) if isinstance(r, Mapping) else r for r in ckpt.get("low_rank") or []]
    due = [r for r in records if r.after_thinning_plans == plans_done or (last and r.after_thinning_plans > plans_done)]
    try:
        replay_decompositions(model, due)
    except DistillerError as e:
        raise CheckpointError(
            f"The low-rank factorization in checkpoint {str(path)!r} does not fit the model: {e}"
        ) from None


def _replay_thinning(path: Path, ckpt: Mapping[str, Any], model: nn.Module) -> list[ThinningPlan]:
    """Shrink (and factorize) the dense ``model`` as the checkpoint's model was, so that its weights fit."""
    plans = []
    for i, data in enumerate(ckpt["thinning_plans"]):
        _replay_low_rank(path, ckpt, model, i, last=False)
        try:
            plan = ThinningPlan.from_dict(data)
            plan.apply(model)
        except DistillerError as e:
            raise CheckpointError(
                f"Thinning plan {i} of checkpoint {str(path)!r} does not fit the model: {e}"
            ) from None
        plans.append(plan)
    _replay_low_rank(path, ckpt, model, len(plans), last=True)
    return plans


def _load_state_dict(
    path: Path, state: Mapping[str, torch.Tensor], model: nn.Module, strict: bool
) -> tuple[list, list]:
    """Load canonical-named ``state`` into ``model`` whatever its wrapping; returns (missing, unexpected)."""
    own = model.state_dict()
    by_canonical = {normalize_module_name(k): k for k in own}
    missing = [k for k in by_canonical if k not in state and not k.endswith(_OPTIONAL_KEYS)]
    unexpected = [k for k in state if k not in by_canonical]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[by_canonical[k]].shape)}"
        for k, v in state.items()
        if k in by_canonical and v.shape != own[by_canonical[k]].shape
    ]
    if mismatched or (strict and (missing or unexpected)):
        raise CheckpointError(_mismatch_message(path, missing, unexpected, mismatched, len(by_canonical)))
    model.load_state_dict({by_canonical[k]: v for k, v in state.items() if k in by_canonical}, strict=False)
    return missing, unexpected


def _mismatch_message(path: Path, missing: list, unexpected: list, mismatched: list, n_model: int) -> str:
    def first(items: list) -> str:
        more = f" (and {len(items) - 5} more)" if len(items) > 5 else ""
        return ", ".join(items[:5]) + more

    parts = [f"Checkpoint {str(path)!r} does not fit the model."]
    if mismatched:
        parts.append(f"Shape mismatch: {first(mismatched)}.")
    if missing:
        parts.append(f"Missing in the checkpoint: {first(missing)}.")
    if unexpected:
        parts.append(f"Not in the model: {first(unexpected)}.")
    if len(missing) + len(unexpected) > n_model // 2:
        parts.append("This is probably a checkpoint of another architecture; build the model it was saved from.")
    elif mismatched:
        parts.append(
            "Likely causes: a checkpoint of another architecture or number of classes (dataset), or a thinned "
            "model saved without its thinning plans."
        )
    else:
        parts.append("Likely cause: a checkpoint of another model variant; strict=False ignores the difference.")
    return " ".join(parts)


def _fit_optimizer_state(
    path: Path, state: dict[str, Any] | None, model: nn.Module, plans: list[ThinningPlan]
) -> dict[str, Any] | None:
    """Slice optimizer state left at the dense shapes (the original did not always thin it).

    The original's thinned checkpoints can hold momentum buffers of the *dense* model; replaying the
    thinning plans on them gives exactly the thinned buffers. State is matched to parameters by
    position in ``param_groups``, which holds for an optimizer built on ``model.parameters()``;
    other layouts are left as they are.
    """
    if not state or not plans or not isinstance(state.get("state"), Mapping):
        return state
    names = [normalize_module_name(n) for n, _ in model.named_parameters()]
    shapes = {normalize_module_name(n): p.shape for n, p in model.named_parameters()}
    ids = [pid for group in state.get("param_groups") or [] for pid in group.get("params", ())]
    if len(ids) != len(names):
        return state
    name_of = dict(zip(ids, names))  # new files index parameters 0..n-1, the original's used id()s
    slices = [s for plan in plans for s in plan.slices]
    fitted = {}
    for index, param_state in state["state"].items():
        name = name_of.get(index)
        if name is None or not isinstance(param_state, Mapping):
            fitted[index] = param_state
            continue
        param_state = dict(param_state)
        for key, value in param_state.items():
            if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape == shapes[name]:
                continue
            for s in slices:
                if s.tensor == name:
                    value = s.apply_to(value)
            if value.shape != shapes[name]:
                raise CheckpointError(
                    f"The optimizer state {key!r} of {name} in {str(path)!r} has shape {tuple(value.shape)}, "
                    f"but the parameter has {tuple(shapes[name])}; resume with --reset-optimizer."
                )
            param_state[key] = value
        fitted[index] = param_state
    return {**state, "state": fitted}


def _move_masks(sched: dict[str, Any] | None, device: torch.device) -> dict[str, Any] | None:
    if sched is None or not isinstance(sched.get("masks_dict"), Mapping):
        return sched
    masks = {k: (None if m is None else m.to(device)) for k, m in sched["masks_dict"].items()}
    return {**sched, "masks_dict": masks}


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    device: str | torch.device = "cpu",
    strict: bool = True,
    already_thinned: bool = False,
) -> LoadedCheckpoint:
    """Restore a checkpoint into ``model`` (in place) and return everything else it holds.

    Checks the architecture (``model.arch`` vs the checkpoint's ``arch``, when both are known),
    replays thinning plans *before* loading the weights (so a dense model takes the thinned shapes),
    loads the state dict and moves the model to ``device``. Optimizer and scheduler state are
    returned for the caller to restore into the objects it builds. Original Distiller checkpoints
    lack BN ``num_batches_tracked``; the model keeps its own.

    With ``already_thinned`` the thinning plans and decompositions are not replayed: ``model`` has
    the checkpoint's shapes already (see :func:`replay_checkpoint_thinning`, used before a quantized model is rebuilt).

    Raises:
        CheckpointError: unreadable or unsafe file, other architecture, thinning plan or weights
            that do not fit (shape mismatches always; missing/unexpected keys with ``strict``).
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    _check_arch(path, ckpt, model)
    if already_thinned:
        plans = [ThinningPlan.from_dict(data) for data in ckpt["thinning_plans"]]
    else:
        plans = _replay_thinning(path, ckpt, model)
    missing, unexpected = _load_state_dict(path, ckpt["state_dict"], model, strict)
    device = torch.device(device)
    model.to(device)
    epoch = ckpt["epoch"]
    return LoadedCheckpoint(
        model=model,
        epoch=epoch,
        start_epoch=0 if epoch is None else int(epoch) + 1,
        arch=ckpt["arch"],
        dataset=ckpt["dataset"],
        extras=ckpt["extras"],
        optimizer_state=_fit_optimizer_state(path, ckpt["optimizer_state_dict"], model, plans),
        optimizer_type=ckpt["optimizer_type"],
        scheduler_state=_move_masks(ckpt["compression_sched"], device),
        thinning_plans=plans,
        quantizer_metadata=ckpt["quantizer_metadata"],
        rng_state=ckpt["rng_state"],
        legacy=ckpt["format"] == LEGACY_FORMAT,
        missing_keys=missing,
        unexpected_keys=unexpected,
    )


def replay_checkpoint_thinning(path: str | os.PathLike, model: nn.Module) -> None:
    """Give the float ``model`` the checkpoint's thinned (and factorized) shapes, in place.

    A quantized checkpoint of a thinned model is rebuilt from the float model, so the thinning comes
    first; :func:`load_checkpoint` is then called with ``already_thinned=True``.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    _check_arch(path, ckpt, model)
    _replay_thinning(path, ckpt, model)


def load_lean_checkpoint(
    path: str | os.PathLike, model: nn.Module, *, device: str | torch.device | None = None, strict: bool = True
) -> nn.Module:
    """Load only the weights (replaying thinning plans), e.g. for ``--exp-load-weights-from``.

    Raises:
        CheckpointError: as :func:`load_checkpoint`.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    _check_arch(path, ckpt, model)
    _replay_thinning(path, ckpt, model)
    _load_state_dict(path, ckpt["state_dict"], model, strict)
    return model if device is None else model.to(device)
