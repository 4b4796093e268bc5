"""Seeding, so that a ``--deterministic`` run is reproducible bit for bit on CPU.

Every epoch's randomness (shuffling, subset draws, augmentation, dropout) is derived from
``(seed, epoch)`` rather than carried over from the previous epoch. A run resumed from a
checkpoint at an epoch boundary therefore continues exactly as the uninterrupted run would,
without needing to store random-number-generator states.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed depending only on ``seed`` and ``keys``, stable across processes and versions.

    Hashing (rather than ``seed + epoch``) keeps streams independent: (seed=1, epoch=0) and
    (seed=0, epoch=1) do not collide, nor does the validation split with epoch 0's shuffle.
    """
    text = ":".join(str(k) for k in (seed, *keys))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and CUDA) generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(enabled: bool = True) -> None:
    """Ask PyTorch for deterministic kernels (warn, not fail, where none exists)."""
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = enabled
        torch.backends.cudnn.benchmark = not enabled
