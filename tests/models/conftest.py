"""Fixtures for model-zoo tests: paths to the shared real data (skipped when absent)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from shared_data import CHECKPOINTS, ORIGINAL_SAMPLES, SHARED_DATA


@pytest.fixture(autouse=True, scope="module")
def _one_intra_op_thread() -> Iterator[None]:
    """Run model tests on one intra-op thread.

    They push batches of two samples through small networks, where a thread pool costs more than it
    saves, and on a busy machine oversubscribed OpenMP threads spin against each other (measured on
    2 cores under load: 75 s with two threads, 25 s with one). Restored after each module.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def checkpoints_dir() -> Path:
    if not CHECKPOINTS.is_dir():
        pytest.skip(f"original Distiller checkpoints not found at {CHECKPOINTS} (../shared/data is absent)")
    return CHECKPOINTS


@pytest.fixture
def cifar10_dir() -> Path:
    folder = SHARED_DATA / "cifar10"
    if not (folder / "test_order.csv").is_file():
        pytest.skip(f"CIFAR-10 test images not found at {folder} (../shared/data is absent)")
    return folder


@pytest.fixture
def original_samples_dir() -> Path:
    if not ORIGINAL_SAMPLES.is_dir():
        pytest.skip(f"samples of the original's files not found at {ORIGINAL_SAMPLES} (../shared is absent)")
    return ORIGINAL_SAMPLES
