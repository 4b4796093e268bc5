"""Keeping masks, buffers and statistics equal on every rank, and checking that they are.

DDP keeps the *weights* of all ranks equal by averaging gradients; everything else a rank computes
on its own. Compression adds state that DDP does not know about:

* **masks** — computed on every rank from equal weights (and rank 0's random draws, see
  :mod:`~distiller.distributed.rng`), they agree by construction. As a guarantee against anything
  that would make them drift (a criterion that reads rank-local data, such as feature-map
  reconstruction, or an activation statistic read mid-epoch), every mask a policy changes is
  broadcast from rank 0, together with its parameter, right after the hook that changed it.
  Unchanged masks cost nothing: a change is detected by the mask tensor's identity (policies assign
  new mask tensors).
* **buffers** (BatchNorm running statistics) — each rank updates them on its own batches; DDP
  broadcasts rank 0's at the start of every training forward, but after the last step of an epoch
  they differ, and evaluation would differ. :func:`sync_buffers` broadcasts them.

:func:`fingerprints` hashes masks, weights and buffers so that tests (and a suspicious user) can
compare ranks bit for bit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from distiller.distributed.collectives import all_gather_objects, broadcast_
from distiller.distributed.process_group import is_active
from distiller.errors import DistributedError
from distiller.naming import normalize_module_name

__all__ = [
    "MaskSnapshot",
    "broadcast_changed_masks",
    "changed_masks",
    "fingerprints",
    "parameter_lookup",
    "snapshot_masks",
    "sync_buffers",
    "tensor_digest",
]

MaskSnapshot = dict[str, Any]
"""``{mask name: mask tensor or None}`` taken before a hook runs."""


def snapshot_masks(masks: Mapping[str, Any]) -> MaskSnapshot:
    """The current mask tensor of every masker (held, so identities cannot be reused meanwhile)."""
    return {name: getattr(masker, "mask", None) for name, masker in masks.items()}


def changed_masks(masks: Mapping[str, Any], before: MaskSnapshot) -> list[str]:
    """Names whose mask tensor was replaced since ``before`` (and is not ``None``), in dict order."""
    return [
        name
        for name, masker in masks.items()
        if (mask := getattr(masker, "mask", None)) is not None and mask is not before.get(name)
    ]


def broadcast_changed_masks(
    masks: Mapping[str, Any],
    names: list[str],
    parameter_of: Callable[[str], torch.Tensor | None],
) -> None:
    """Make rank 0's version of the masks ``names`` (and of their parameters) every rank's.

    Args:
        masks: the maskers (a :class:`~distiller.sparsity.MaskSet`).
        names: the masks to send, the same list on every rank.
        parameter_of: the parameter a mask belongs to (``None``: send the mask only).

    Raises:
        DistributedError: the ranks changed different masks (their schedules or models differ).
    """
    if not is_active():
        return
    layout = [(name, tuple(masks[name].mask.shape)) for name in names]
    views = all_gather_objects(layout, what="mask layout check")
    if any(view != layout for view in views):
        differing = next(r for r, view in enumerate(views) if view != layout)
        raise DistributedError(
            f"Ranks changed different masks in the same step (rank 0: {views[0][:3]}..., rank {differing}: "
            f"{views[differing][:3]}...): the ranks do not run the same schedule on the same model."
        )
    tensors: list[torch.Tensor] = []
    for name in names:
        tensors.append(masks[name].mask)
        param = parameter_of(name)
        if param is not None:
            tensors.append(param.data)
    broadcast_(tensors, src=0, what="mask broadcast")


def parameter_lookup(model: nn.Module, resolve: Callable[[str], Any] | None = None) -> Callable[[str], Any]:
    """``mask name -> parameter`` for ``model``; ``resolve(param_name)`` maps a parameter to its masker
    when names differ (a quantizer's ``wrapped_module``/``float_`` copies)."""
    by_mask: dict[str, torch.Tensor] = {}
    for name, param in model.named_parameters():
        masker = resolve(name) if resolve is not None else None
        key = getattr(masker, "name", None) or normalize_module_name(name)
        by_mask.setdefault(key, param)
    return by_mask.get


def sync_buffers(model: nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics, quantizer ranges)."""
    if is_active():
        broadcast_([b for _, b in model.named_buffers()], src=0, what="buffer broadcast")


def tensor_digest(tensor: torch.Tensor | None) -> str | None:
    """SHA-256 of a tensor's bytes (dtype and shape included), or ``None``."""
    if tensor is None:
        return None
    t = tensor.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def fingerprints(model: nn.Module, masks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Digests of every mask, of all parameters together and of all buffers together.

    Returns:
        ``{"masks": {name: digest or None}, "params": digest, "buffers": digest}``.
    """

    def joint(tensors: list[tuple[str, torch.Tensor]]) -> str:
        h = hashlib.sha256()
        for name, tensor in tensors:
            h.update(name.encode())
            h.update((tensor_digest(tensor) or "").encode())
        return h.hexdigest()

    return {
        "masks": {name: tensor_digest(getattr(m, "mask", None)) for name, m in (masks or {}).items()},
        "params": joint([(normalize_module_name(n), p) for n, p in model.named_parameters()]),
        "buffers": joint([(normalize_module_name(n), b) for n, b in model.named_buffers()]),
    }
