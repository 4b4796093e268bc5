"""Checkpoints: safe save/load, resume, and import of the original Distiller's ``.pth.tar`` files.

Checkpoints hold tensors and plain data only and are always read with ``weights_only=True``; writes
are atomic. See :mod:`distiller.checkpoint.save` for the format.
"""

from distiller.checkpoint.describe import checkpoint_summary, describe_checkpoint
from distiller.checkpoint.load import (
    LoadedCheckpoint,
    load_checkpoint,
    load_lean_checkpoint,
    replay_checkpoint_thinning,
)
from distiller.checkpoint.names import normalize_module_name, normalize_param_name
from distiller.checkpoint.read import read_checkpoint
from distiller.checkpoint.save import FORMAT, build_checkpoint, checkpoint_paths, save_checkpoint

__all__ = [
    "FORMAT",
    "LoadedCheckpoint",
    "build_checkpoint",
    "checkpoint_paths",
    "checkpoint_summary",
    "describe_checkpoint",
    "load_checkpoint",
    "load_lean_checkpoint",
    "replay_checkpoint_thinning",
    "normalize_module_name",
    "normalize_param_name",
    "read_checkpoint",
    "save_checkpoint",
]
