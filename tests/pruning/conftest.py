"""Pruning tests: one intra-op thread (tiny tensors) and a fixed seed per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_and_seed() -> Iterator[None]:
    """Tiny tensors: threads only add overhead on a shared 2-core machine; seed for reproducibility."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
