"""Fractions vs counts, and samplers whose draws depend only on (seed, epoch)."""

from __future__ import annotations

import pytest
import torch

from distiller.data import EpochSubsetSampler, FixedSubsetSampler, derive_seed, resolve_size, split_indices
from distiller.errors import ConfigError


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [
        (1.0, 500, 500),
        (1, 500, 500),  # an integer 1 is the fraction 1.0, not one sample
        (0.5, 500, 250),
        (0.29, 100, 29),  # 0.29 * 100 == 28.999999999999996 in floating point
        (0.001, 500, 1),  # a fraction keeps at least one sample
        (2, 500, 2),
        (100, 500, 100),
        (100.0, 500, 100),
        (10_000, 500, 500),  # counts are clipped to the split
    ],
)
def test_resolve_size_fraction_or_count(value: float, total: int, expected: int) -> None:
    assert resolve_size(value, total) == expected


@pytest.mark.parametrize("value", [0, -0.5, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_resolve_size_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="size"):
        resolve_size(value, 100)  # type: ignore[arg-type]


def test_derive_seed_is_stable_and_separates_streams() -> None:
    assert derive_seed(0, "train", 1) == derive_seed(0, "train", 1)
    assert len({derive_seed(0, "train", 1), derive_seed(1, "train", 0), derive_seed(0, "valid", 1)}) == 3


def test_epoch_sampler_depends_only_on_seed_and_epoch() -> None:
    indices = torch.arange(100, 200)
    first = EpochSubsetSampler(indices, 30, seed=5)
    second = EpochSubsetSampler(indices, 30, seed=5)
    second.set_epoch(3)
    runs = [list(first) for _ in range(4)]  # no set_epoch: each pass advances to the next epoch
    assert list(second) == runs[3]
    assert len(runs[0]) == len(first) == 30
    assert len(set(runs[0])) == 30 and set(runs[0]) <= set(indices.tolist())
    assert runs[0] != runs[1] and set(runs[0]) != set(runs[1])  # the subset itself is redrawn
    first.set_epoch(1)
    assert list(first) == runs[1]
    assert list(EpochSubsetSampler(indices, 30, seed=6)) != runs[0]


def test_full_epoch_sampler_is_a_permutation() -> None:
    sampler = EpochSubsetSampler(range(50), seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(50)) and order != list(range(50))


def test_fixed_sampler_is_sorted_and_stable() -> None:
    sampler = FixedSubsetSampler(range(1000), 100, seed=1, stream="valid")
    drawn = list(sampler)
    assert drawn == sorted(drawn) and len(set(drawn)) == 100
    sampler.set_epoch(7)
    assert list(sampler) == drawn
    assert list(FixedSubsetSampler(range(1000), 100, seed=1, stream="valid")) == drawn
    assert list(FixedSubsetSampler(range(1000), 100, seed=1, stream="test")) != drawn
    assert list(FixedSubsetSampler([5, 3, 9])) == [5, 3, 9]  # the full set keeps the given order


def test_split_indices_partition() -> None:
    train, valid = split_indices(1000, 0.1, seed=0)
    assert len(valid) == 100 and len(train) == 900
    assert sorted(torch.cat([train, valid]).tolist()) == list(range(1000))
    again_train, again_valid = split_indices(1000, 0.1, seed=0)
    assert torch.equal(valid, again_valid) and torch.equal(train, again_train)
    assert not torch.equal(split_indices(1000, 0.1, seed=1)[1], valid)
    train, valid = split_indices(10, 0.0, seed=0)
    assert len(valid) == 0 and train.tolist() == list(range(10))
    assert len(split_indices(5, 0.01, seed=0)[1]) == 1  # a positive split holds at least one sample
