"""Loading weights into a freshly built model: torchvision's pretrained ImageNet weights or a local file.

Downloads go through torchvision's own weight enums (and its cache in ``$TORCH_HOME``), under a
socket timeout, so an offline machine fails in seconds with a message that says what to do instead
of hanging. Local files are read with ``torch.load(weights_only=True)``: a weights file can never run
code.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from distiller.errors import ModelError

#: Seconds a download may wait on one socket operation before it is abandoned.
DOWNLOAD_TIMEOUT_S = 20.0

_OFFLINE_HINT = (
    "Without network access, download them elsewhere and pass weights_path=FILE (CLI: --pretrained-weights FILE)"
)


@contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def pretrained_weights(pretrained_name: str) -> Any:
    """torchvision's default weights enum member for ``pretrained_name`` (e.g. ``ResNet18_Weights.IMAGENET1K_V1``)."""
    try:
        return torchvision.models.get_model_weights(pretrained_name).DEFAULT
    except (ValueError, KeyError, AttributeError) as e:
        raise ModelError(f"torchvision has no pretrained weights for {pretrained_name!r}: {e}") from None


@contextmanager
def download_guard(arch: str):
    """Run a download with a socket timeout; turn network and file errors into :class:`ModelError`."""
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            yield
    except (OSError, RuntimeError, EOFError) as e:
        reason = getattr(e, "reason", None) or e  # URLError wraps the socket error in .reason
        raise ModelError(
            f"Model {arch!r}: could not download pretrained weights for {arch}: {reason}. {_OFFLINE_HINT}."
        ) from e


def download_state_dict(arch: str, pretrained_name: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of torchvision model ``pretrained_name`` (downloaded or from the cache)."""
    weights = pretrained_weights(pretrained_name)
    with download_guard(arch):
        return weights.get_state_dict(progress=False, check_hash=True)


def canonical_key(key: str) -> str:
    """A parameter name without the ``module`` path elements that (Distributed)DataParallel inserts.

    ``module.layer1.0.conv1.weight`` and ``features.module.0.weight`` (the original's AlexNet/VGG,
    which parallelized only ``features``) become ``layer1.0.conv1.weight`` and ``features.0.weight``.
    """
    return ".".join(part for part in key.split(".") if part != "module")


def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict stored in ``path``: a bare state dict, or a checkpoint dict with ``state_dict``.

    Keys come back in canonical form (see :func:`canonical_key`).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Weights file {str(path)!r} does not exist (or is not a file).")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types (UnpicklingError, RuntimeError, EOFError, ...)
        raise ModelError(
            f"Cannot read weights file {str(path)!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. "
            "It must be a torch.save'd state dict (or a checkpoint with a 'state_dict' entry) of plain tensors."
        ) from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(
            f"Weights file {str(path)!r} holds no state dict: expected a mapping of names to tensors "
            "(or a checkpoint with a 'state_dict' entry)."
        )
    return {canonical_key(k): v for k, v in obj.items()}


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], arch: str, origin: str) -> None:
    """``model.load_state_dict(state_dict, strict=True)``, with a :class:`ModelError` that lists mismatches."""
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        own = model.state_dict()
        # Old checkpoints lack BN's num_batches_tracked; BatchNorm fills it in, so it is never the problem.
        missing = sorted(k for k in set(own) - set(state_dict) if not k.endswith("num_batches_tracked"))
        unexpected = sorted(set(state_dict) - set(own))
        shapes = sorted(
            f"{k} {tuple(state_dict[k].shape)} vs {tuple(own[k].shape)}"
            for k in set(own) & set(state_dict)
            if state_dict[k].shape != own[k].shape
        )
        details = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
                details.append(f"{label}: {', '.join(items[:5])}{more}")
        summary = "; ".join(details) or str(e).splitlines()[0]
        raise ModelError(
            f"Weights from {origin} do not fit model {arch!r}: {summary}. "
            "Check that the file was saved from the same architecture and number of classes."
        ) from None
