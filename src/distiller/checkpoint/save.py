"""Saving checkpoints: tensors and plain data only, written atomically.

A checkpoint is a dict that ``torch.load(f, weights_only=True)`` reads without any allowlist:

``format``                ``"distiller-nn/1"``
``state_dict``            model weights and buffers, canonical names (no ``module.``)
``arch``, ``dataset``     what to build before loading (``create_model(arch, dataset)``)
``epoch``                 the last completed epoch (training resumes at ``epoch + 1``)
``extras``                metrics, e.g. ``current_top1``, ``best_top1``, ``best_epoch``
``optimizer_state_dict``  ``optimizer.state_dict()`` (or None)
``optimizer_type``        the optimizer's class *name* (``"SGD"``), never the class itself
``compression_sched``     the scheduler's state dict, including ``masks_dict`` {param: mask or None}
``thinning_plans``        ``[ThinningPlan.to_dict(), ...]``, replayed before loading ``state_dict``
``low_rank``              ``[DecompositionRecord.to_dict(), ...]``: layers replaced by low-rank factors,
                          replayed (in order with the thinning plans) before loading ``state_dict``;
                          present only when some layer was factorized
``quantizer_metadata``    plain description of the quantizer (or None)
``rng_state``             random-number-generator states (or None)

A crash, a full disk or Ctrl-C while saving never leaves a half-written file under the final name:
the bytes go to a temporary file in the same directory, are fsync'ed, then renamed over the target.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.checkpoint.plain import to_plain_data
from distiller.errors import CheckpointError
from distiller.low_rank.record import applied_decompositions
from distiller.naming import normalize_module_name
from distiller.thinning.plan import ThinningPlan, applied_thinning_plans

FORMAT = "distiller-nn/1"
"""Value of the ``format`` key; the number changes when a reader of the old format would misread the new."""


def checkpoint_paths(directory: str | os.PathLike, name: str | None = None) -> tuple[Path, Path]:
    """``(checkpoint, best)`` file paths: ``[<name>_]checkpoint.pth.tar`` and ``[<name>_]best.pth.tar``."""
    prefix = f"{name}_" if name else ""
    directory = Path(directory)
    return directory / f"{prefix}checkpoint.pth.tar", directory / f"{prefix}best.pth.tar"


def canonical_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with canonical keys, so DataParallel/DDP wrapping does not change the file."""
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        canonical = normalize_module_name(key)
        if canonical in state:
            raise CheckpointError(f"Two model tensors are both named {canonical!r} once 'module.' is removed.")
        state[canonical] = value.detach()
    return state


def build_checkpoint(
    *,
    model: nn.Module,
    arch: str | None,
    dataset: str | None,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    thinning_plans: Sequence[ThinningPlan | Mapping[str, Any]] | None = None,
    quantizer_metadata: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict that :func:`save_checkpoint` writes (see the module docstring).

    Raises:
        CheckpointError: a value is not a tensor or plain data; the message names its key.
    """
    if thinning_plans is None:
        thinning_plans = applied_thinning_plans(model)
    if scheduler_state is not None and not isinstance(scheduler_state, Mapping):
        scheduler_state = scheduler_state.state_dict()  # a scheduler object was passed
    if scheduler_state is not None and isinstance(scheduler_state.get("masks_dict"), Mapping):
        masks = {normalize_module_name(k): v for k, v in scheduler_state["masks_dict"].items()}
        scheduler_state = {**scheduler_state, "masks_dict": masks}
    checkpoint = {
        "format": FORMAT,
        "state_dict": canonical_state_dict(model),
        "arch": arch,
        "dataset": dataset,
        "epoch": int(epoch),
        "extras": dict(extras or {}),
        "optimizer_state_dict": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_type": type(optimizer).__name__ if optimizer is not None else None,
        "compression_sched": scheduler_state,
        "thinning_plans": [p.to_dict() if isinstance(p, ThinningPlan) else dict(p) for p in thinning_plans],
        "quantizer_metadata": quantizer_metadata,
        "rng_state": rng_state,
    }
    decompositions = applied_decompositions(model)
    if decompositions:
        checkpoint["low_rank"] = [r.to_dict() for r in decompositions]
    return {key: to_plain_data(value, f"checkpoint[{key!r}]") for key, value in checkpoint.items()}


def save_checkpoint(
    directory: str | os.PathLike,
    *,
    model: nn.Module,
    arch: str | None,
    dataset: str | None,
    epoch: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    is_best: bool = False,
    name: str | None = None,
    thinning_plans: Sequence[ThinningPlan | Mapping[str, Any]] | None = None,
    quantizer_metadata: Mapping[str, Any] | None = None,
    rng_state: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write ``[<name>_]checkpoint.pth.tar`` (and ``[<name>_]best.pth.tar`` if ``is_best``) atomically.

    ``thinning_plans`` defaults to the plans applied to ``model`` (see
    :func:`~distiller.thinning.applied_thinning_plans`), so a thinned model is never saved without
    the plans that rebuild its shapes. Returns the paths written.

    Raises:
        CheckpointError: a value is not plain data, or the file cannot be written (existing files
            are then unchanged).
    """
    checkpoint = build_checkpoint(
        model=model,
        arch=arch,
        dataset=dataset,
        epoch=epoch,
        optimizer=optimizer,
        scheduler_state=scheduler_state,
        extras=extras,
        thinning_plans=thinning_plans,
        quantizer_metadata=quantizer_metadata,
        rng_state=rng_state,
    )
    path, best = checkpoint_paths(directory, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"Cannot create the checkpoint directory {str(path.parent)!r}: {e}") from None
    copies = [best] if is_best else []
    atomic_save(checkpoint, path, copies=copies)
    return [path, *copies]


def atomic_save(obj: Any, path: Path, *, copies: Sequence[Path] = ()) -> None:
    """``torch.save(obj)`` to ``path`` and byte-identical ``copies``, each replaced atomically.

    Raises:
        CheckpointError: an ``OSError`` (disk full, permissions); the targets are unchanged.
    """
    temporaries: list[Path] = []
    try:
        tmp = _create_temporary(path, temporaries)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        copy_tmps = []
        for copy in copies:
            copy_tmp = _create_temporary(copy, temporaries)
            shutil.copyfile(tmp, copy_tmp)
            _fsync_file(copy_tmp)
            copy_tmps.append(copy_tmp)
        os.replace(tmp, path)
        for copy_tmp, copy in zip(copy_tmps, copies):
            os.replace(copy_tmp, copy)
        for directory in {path.parent, *(c.parent for c in copies)}:
            _fsync_directory(directory)
    except OSError as e:
        raise CheckpointError(f"Could not write checkpoint {str(path)!r}: {e}. Existing files are unchanged.") from None
    finally:
        for tmp in temporaries:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _create_temporary(target: Path, registry: list[Path]) -> Path:
    """A new empty hidden file next to ``target`` (same filesystem, so the rename is atomic)."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode 0o666 & ~umask, like open()
    os.close(fd)
    registry.append(tmp)
    return tmp


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not possible on every platform (e.g. Windows), hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
