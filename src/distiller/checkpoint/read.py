"""Reading checkpoints safely: ``weights_only=True`` always, with errors that say what is wrong.

Nothing is ever unpickled with ``weights_only=False``: a checkpoint that needs arbitrary classes is
refused with an error naming the class. Original Distiller files pass through a small allowlist
(:mod:`distiller.checkpoint.legacy`). Reading never writes to the file.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.serialization import safe_globals

from distiller.checkpoint.legacy import LEGACY_FORMAT, LEGACY_SAFE_GLOBALS, convert_legacy, is_legacy, normalize_masks
from distiller.checkpoint.save import FORMAT
from distiller.errors import CheckpointError, DistillerError
from distiller.naming import normalize_module_name

STATE_DICT_FORMAT = "state-dict"
"""``format`` given to a file that holds a bare state dict."""

_UNSAFE_MARKERS = (
    "Unsupported global",
    "unsupported GLOBAL",
    "Can only create new object",
    "Can only build",
    "Trying to call reduce",
    "Unsupported class",
)
_GLOBAL_NAME = re.compile(r"GLOBAL ([\w.]+)")


def _torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` and the legacy allowlist; errors become CheckpointError."""
    try:
        with safe_globals(LEGACY_SAFE_GLOBALS), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4", irrelevant to users
            return torch.load(path, map_location="cpu", weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise CheckpointError(f"Cannot read checkpoint {str(path)!r}: {e.strerror or e}.") from None
    except pickle.UnpicklingError as e:
        reason = _weights_only_reason(str(e))
        if any(marker in reason for marker in _UNSAFE_MARKERS):
            match = _GLOBAL_NAME.search(reason)
            what = f"the Python object {match.group(1)!r}" if match else "Python objects other than tensors"
            raise CheckpointError(
                f"Checkpoint {str(path)!r} contains {what}, which would have to be unpickled to load it; "
                "distiller refuses to execute code from checkpoints (it loads with weights_only=True). If you "
                "trust the file, load it yourself and re-save its state_dict (tensors only)."
            ) from None
        raise _corrupt(path, f"not a PyTorch file, or damaged pickle data ({reason})") from None
    except (RuntimeError, EOFError, ValueError, OSError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise _corrupt(path, str(e) or type(e).__name__) from None


def _weights_only_reason(message: str) -> str:
    """The unpickler's own message, without torch's generic advice around it."""
    _, sep, rest = message.partition("WeightsUnpickler error:")
    reason = rest if sep else message
    reason = reason.split("Check the documentation of torch.load")[0]
    return " ".join(reason.split()) or "unreadable pickle data"


def _corrupt(path: Path, reason: str) -> CheckpointError:
    reason = " ".join(reason.split())
    if len(reason) > 300:
        reason = reason[:300] + "..."
    return CheckpointError(
        f"Checkpoint {str(path)!r} is corrupt or truncated: {reason}. Use another copy of the file, "
        "or the previous checkpoint."
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read any checkpoint into the current format's dict, safely.

    Accepts distiller-nn checkpoints, original Distiller ``.pth.tar`` files (normalized: canonical
    names, ``thinning_plans`` instead of recipes, ``optimizer_type`` as a string) and bare state
    dicts (wrapped as ``{'state_dict': ...}``). ``format`` tells them apart: ``"distiller-nn/1"``,
    ``"distiller-legacy"`` or ``"state-dict"``. Tensors are on the CPU.

    Raises:
        CheckpointError: missing, unreadable, corrupt or truncated file; a file that needs arbitrary
            classes to unpickle; a dict that is not a checkpoint; a newer format.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"Checkpoint file {str(path)!r} does not exist.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint path {str(path)!r} is not a file.")
    raw = _torch_load(path)
    if not isinstance(raw, Mapping):
        raise CheckpointError(
            f"{str(path)!r} holds a {type(raw).__name__}, not a checkpoint (a dict with a 'state_dict')."
        )
    if raw and all(isinstance(v, torch.Tensor) for v in raw.values()):
        raw = {"format": STATE_DICT_FORMAT, "state_dict": dict(raw)}
    elif is_legacy(raw):
        try:
            raw = convert_legacy(raw)
        except DistillerError as e:
            raise CheckpointError(f"Cannot import the original Distiller checkpoint {str(path)!r}: {e}") from None
    fmt = raw.get("format")
    if fmt not in (FORMAT, LEGACY_FORMAT, STATE_DICT_FORMAT):
        if isinstance(fmt, str) and fmt.startswith("distiller-nn/"):
            raise CheckpointError(
                f"Checkpoint {str(path)!r} has format {fmt!r}, newer than this version reads ({FORMAT!r}); "
                "upgrade distiller-nn."
            )
        keys = ", ".join(repr(k) for k in list(raw)[:10])
        raise CheckpointError(f"{str(path)!r} is not a Distiller checkpoint: no 'state_dict' among its keys ({keys}).")
    return _normalized(path, dict(raw))


def _normalized(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    """Fill in absent keys and canonical names; check the state dict holds tensors."""
    state = ckpt.get("state_dict")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Checkpoint {str(path)!r} has no valid 'state_dict' (a dict of tensors).")
    ckpt["state_dict"] = {normalize_module_name(k): v for k, v in state.items()}
    for key in (
        "arch",
        "dataset",
        "epoch",
        "optimizer_state_dict",
        "optimizer_type",
        "compression_sched",
        "quantizer_metadata",
        "rng_state",
    ):
        ckpt.setdefault(key, None)
    ckpt["extras"] = dict(ckpt.get("extras") or {})
    ckpt["thinning_plans"] = list(ckpt.get("thinning_plans") or [])
    ckpt["low_rank"] = list(ckpt.get("low_rank") or [])
    ckpt["compression_sched"] = normalize_masks(ckpt["compression_sched"])
    return ckpt
