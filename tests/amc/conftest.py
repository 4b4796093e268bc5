"""Fixtures of the AMC tests: tiny models and reward batches, built once per module."""

from __future__ import annotations

import importlib.util

import pytest
import torch

if importlib.util.find_spec("gymnasium") is None:  # the `amc` extra is not installed: only the pure parts run
    collect_ignore = ["test_environment.py", "test_search.py", "test_amc_cli.py", "test_macs_observation.py"]


@pytest.fixture(scope="module")
def digits_loaders():
    from distiller.data import load_data

    return load_data("digits", batch_size=64, seed=0)


@pytest.fixture(scope="module")
def digits_batches(digits_loaders):
    from distiller.amc.evaluation import CachedBatches

    return CachedBatches(digits_loaders.calibration_loader(128))


def make_random_batches(shape, count=2, batch=8, classes=10, seed=0):
    """``count`` batches of random inputs and labels."""
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(batch, *shape, generator=g), torch.randint(classes, (batch,), generator=g)) for _ in range(count)
    ]


@pytest.fixture
def random_batches():
    return make_random_batches


@pytest.fixture(scope="module")
def trained_digits_model(digits_loaders):
    """simplenet_digits trained for a few epochs (about 90% on digits): pruning it changes its accuracy."""
    from distiller.models import create_model

    torch.manual_seed(0)
    model = create_model("simplenet_digits", "digits")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(4):
        digits_loaders.set_epoch(epoch)
        model.train()
        for x, y in digits_loaders.train:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()
