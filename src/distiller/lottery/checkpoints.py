"""Tickets from checkpoint files, and ticket checkpoints that ``distiller classify`` retrains.

A ticket checkpoint is an ordinary distiller checkpoint whose scheduler state holds the masks.
``distiller classify --resume-from TICKET --reset-optimizer`` therefore retrains it with the masks
fixed: the scheduler re-applies every mask after each optimizer step, with or without a pruning
policy. The checkpoint's ``epoch`` is the epoch its weights come from: -1 for the initialization
(so a resume without ``--reset-optimizer`` also starts at epoch 0), and the rewind checkpoint's
epoch for late rewinding (so a plain ``--resume-from`` continues the dense run's schedule from there).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from distiller.checkpoint import build_checkpoint, read_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.errors import CheckpointError
from distiller.lottery.pruning import prunable_weights
from distiller.lottery.ticket import Ticket, make_ticket, masks_from_zeros
from distiller.scheduler import CompressionScheduler

__all__ = ["TicketCheckpoint", "save_ticket", "ticket_checkpoint", "ticket_from_checkpoints"]

log = logging.getLogger(__name__)

INIT_EPOCH = -1
"""``epoch`` of a checkpoint holding the initialization: no epoch completed, training starts at 0."""


@dataclass
class TicketCheckpoint:
    """A ticket made from checkpoint files, ready to save."""

    checkpoint: dict[str, Any]
    ticket: Ticket
    arch: str
    dataset: str | None
    epoch: int
    masks_source: str  # "scheduler masks" or "zeros of the trained weights"


def ticket_checkpoint(
    model: nn.Module,
    ticket: Ticket,
    *,
    arch: str,
    dataset: str | None,
    epoch: int,
    extras: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Load ``ticket`` into ``model`` (in place) and build its checkpoint, masks in the scheduler state.

    Raises:
        CheckpointError: the ticket does not fit ``model``.
    """
    try:
        model.load_state_dict(ticket.state_dict, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"The ticket does not fit a {arch!r} model: {' '.join(str(e).split())}") from None
    scheduler = CompressionScheduler(model)
    scheduler.load_state_dict({"masks_dict": ticket.masks})
    return build_checkpoint(
        model=model, arch=arch, dataset=dataset, epoch=epoch, scheduler_state=scheduler.state_dict(), extras=extras
    )


def _read(path: str | os.PathLike, role: str) -> dict[str, Any]:
    ckpt = read_checkpoint(path)
    if ckpt.get("quantizer_metadata"):
        raise CheckpointError(
            f"The {role} checkpoint {str(path)!r} is quantized; lottery tickets are made from float models. "
            "Use the checkpoint saved before quantization."
        )
    if ckpt.get("thinning_plans"):
        raise CheckpointError(
            f"The {role} checkpoint {str(path)!r} is thinned (channels were removed), so its weights no longer "
            "line up with the initialization. Use the pruned checkpoint saved before --thinnify."
        )
    return ckpt


def _agree(key: str, given: str | None, files: dict[str, dict[str, Any]]) -> str | None:
    """The one value of ``key`` (arch or dataset) that the checkpoints record, checked against ``given``."""
    values = {path: ckpt.get(key) for path, ckpt in files.items() if ckpt.get(key)}
    distinct = set(values.values())
    if len(distinct) > 1:
        listing = ", ".join(f"{p!r} is {v!r}" for p, v in values.items())
        raise CheckpointError(
            f"The checkpoints are of different {key}s ({listing}). A ticket combines checkpoints of one run: "
            f"pass the trained checkpoint and the initialization saved by the same run (--save-untrained-model)."
        )
    recorded = distinct.pop() if distinct else None
    if given and recorded and given != recorded:
        raise CheckpointError(
            f"--{'arch' if key == 'arch' else key} {given!r} contradicts the checkpoints, which are of {key} "
            f"{recorded!r}. Drop the flag, or use checkpoints of {given!r}."
        )
    return recorded or given


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - 5} more" if len(items) > 5 else ""
    return ", ".join(items[:5]) + more


def _check_same_shapes(trained_path: str, trained: dict, source_path: str, source: dict) -> None:
    a, b = trained["state_dict"], source["state_dict"]
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(b[k].shape)}" for k, v in a.items() if k in b and v.shape != b[k].shape]
    if not (missing or extra or shapes):
        return
    parts = [f"The checkpoints {trained_path!r} (trained) and {source_path!r} do not hold the same network."]
    if shapes:
        parts.append(f"Shape mismatch: {_listing(shapes)}.")
    if missing:
        parts.append(f"Missing in {source_path!r}: {_listing(missing)}.")
    if extra:
        parts.append(f"Not in {trained_path!r}: {_listing(extra)}.")
    parts.append("Pass checkpoints of the same architecture and dataset, saved by the same run.")
    raise CheckpointError(" ".join(parts))


def _build_model(arch: str, dataset: str | None) -> nn.Module:
    from distiller.models import create_model

    return create_model(arch, None if dataset == "fake" else dataset)


def ticket_from_checkpoints(
    trained: str | os.PathLike,
    init: str | os.PathLike | None = None,
    rewind: str | os.PathLike | None = None,
    *,
    arch: str | None = None,
) -> TicketCheckpoint:
    """The ticket of a trained, pruned checkpoint, rewound to ``init`` or (late rewinding) ``rewind``.

    Args:
        trained: the pruned and trained checkpoint; its scheduler masks (or, without masks, the zeros
            of its conv/linear weights) are the ticket's masks.
        init: the initialization, e.g. ``<name>_untrained_checkpoint.pth.tar`` of ``--save-untrained-model``.
        rewind: a checkpoint of the same run after epoch k; when given, the ticket's weights come from
            it (``init``, if also given, is only checked to be of the same network).
        arch: the architecture, needed only when the checkpoints do not record it (bare state dicts).

    Raises:
        CheckpointError: unreadable, quantized or thinned checkpoints; different architectures,
            datasets or shapes; no architecture known; masks that do not fit.
    """
    if init is None and rewind is None:
        raise CheckpointError(
            "A ticket needs the weights to rewind to: give the initialization or a rewind checkpoint."
        )
    trained_path = str(trained)
    files = {trained_path: _read(trained, "trained")}
    sources = [(str(p), role) for p, role in ((init, "initial"), (rewind, "rewind")) if p is not None]
    for path, role in sources:
        files[path] = _read(path, role)
    arch = _agree("arch", arch, files)
    dataset = _agree("dataset", None, files)
    for path, _ in sources:
        _check_same_shapes(trained_path, files[trained_path], path, files[path])
    if not arch:
        raise CheckpointError(
            f"No checkpoint records its architecture ({', '.join(map(repr, files))} are bare state dicts); "
            "pass it with --arch."
        )
    weights_path, _ = sources[-1]
    source = files[weights_path]
    model = _build_model(arch, dataset)
    trained_ckpt = files[trained_path]
    masks = dict(((trained_ckpt.get("compression_sched") or {}).get("masks_dict")) or {})
    if any(m is not None for m in masks.values()):
        masks_source = "scheduler masks"
    else:
        masks = masks_from_zeros(trained_ckpt["state_dict"], prunable_weights(model))
        masks_source = "zeros of the trained weights"
    ticket = make_ticket(trained_ckpt["state_dict"], source["state_dict"], masks)
    if ticket.sparsity == 0.0:
        log.warning("The trained checkpoint %s has no pruned weight: the ticket is the dense network.", trained_path)
    epoch = INIT_EPOCH if rewind is None else int(source.get("epoch") or 0)
    extras: dict[str, Any] = {
        "lottery": {
            "trained": trained_path,
            "weights": weights_path,
            "rewind_epoch": None if rewind is None else epoch,
            "masks": masks_source,
            "sparsity": ticket.sparsity,
        }
    }
    seed = source["extras"].get("seed")
    if seed is not None:
        extras["seed"] = seed  # a plain --resume-from replays the original run's data order
    checkpoint = ticket_checkpoint(model, ticket, arch=arch, dataset=dataset, epoch=epoch, extras=extras)
    return TicketCheckpoint(checkpoint, ticket, arch, dataset, epoch, masks_source)


def save_ticket(checkpoint: dict[str, Any], path: str | os.PathLike, *, inputs: tuple = ()) -> Path:
    """Write a ticket checkpoint atomically, never over one of its ``inputs``.

    Raises:
        CheckpointError: ``path`` is a folder or one of the inputs, or cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        example = str(path / "ticket.pth.tar")
        raise CheckpointError(f"{str(path)!r} is a folder; give the ticket's file name (e.g. {example!r}).")
    for source in inputs:
        if source is not None and Path(source).exists() and path.exists() and path.samefile(source):
            raise CheckpointError(
                f"Refusing to overwrite the input checkpoint {str(source)!r}; choose another output path."
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"Cannot create the folder of {str(path)!r}: {e.strerror or e}.") from None
    atomic_save(checkpoint, path)
    return path
