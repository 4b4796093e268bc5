"""Samplers whose every random choice derives from ``(seed, epoch)``.

The original redrew training subsets from the global random state, so a run resumed at epoch k saw
different batches than the uninterrupted run. Here each epoch's draw is a pure function of the seed
and the epoch number (as in ``DistributedSampler``): resuming at epoch k and calling
``set_epoch(k)`` replays exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from distiller.determinism import derive_seed

IndexLike = Sequence[int] | torch.Tensor


def seeded_generator(seed: int, *keys: int | str) -> torch.Generator:
    """A CPU generator seeded with :func:`derive_seed`."""
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def _as_index_tensor(indices: IndexLike) -> torch.Tensor:
    return torch.as_tensor(indices, dtype=torch.long).flatten()


class EpochSubsetSampler(Sampler[int]):
    """Each epoch, a fresh random subset of ``num_samples`` of ``indices``, in random order.

    The draw for epoch ``e`` depends only on ``(seed, stream, e)``. :meth:`set_epoch` selects the
    epoch; without it each iteration advances to the next epoch, so a loop that never calls
    ``set_epoch`` still gets a new order every epoch (and the same sequence on every run).
    """

    def __init__(self, indices: IndexLike, num_samples: int | None = None, *, seed: int = 0, stream: str = "train"):
        self.indices = _as_index_tensor(indices)
        total = len(self.indices)
        self.num_samples = total if num_samples is None else int(num_samples)
        if not 0 <= self.num_samples <= total:
            raise ValueError(f"num_samples={num_samples} is outside [0, {total}]")
        self.seed = seed
        self.stream = stream
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose subset and order the next iteration yields."""
        self.epoch = int(epoch)

    def epoch_indices(self, epoch: int) -> torch.Tensor:
        """The dataset indices epoch ``epoch`` visits, in visiting order."""
        generator = seeded_generator(self.seed, self.stream, epoch)
        order = torch.randperm(len(self.indices), generator=generator)[: self.num_samples]
        return self.indices[order]

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        self.epoch += 1
        return iter(self.epoch_indices(epoch).tolist())

    def __len__(self) -> int:
        return self.num_samples


class FixedSubsetSampler(Sampler[int]):
    """A subset of ``num_samples`` of ``indices`` drawn once from ``(seed, stream)``, visited in order.

    Used for validation, test and calibration: every evaluation sees the same samples in the same
    order, so results are comparable across epochs and runs.
    """

    def __init__(self, indices: IndexLike, num_samples: int | None = None, *, seed: int = 0, stream: str = "eval"):
        all_indices = _as_index_tensor(indices)
        total = len(all_indices)
        count = total if num_samples is None else int(num_samples)
        if not 0 <= count <= total:
            raise ValueError(f"num_samples={num_samples} is outside [0, {total}]")
        if count < total:
            chosen = torch.randperm(total, generator=seeded_generator(seed, stream))[:count]
            all_indices = all_indices[chosen.sort().values]
        self.indices = all_indices

    def set_epoch(self, epoch: int) -> None:
        """No-op: the subset is fixed. Present so that all loaders answer ``set_epoch``."""

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices.tolist())

    def __len__(self) -> int:
        return len(self.indices)


def split_indices(total: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(total)`` into (train, validation) index tensors, both sorted.

    The validation part holds ``floor(fraction * total)`` indices (at least one when ``fraction``
    is positive), chosen at random from ``seed`` alone: the split never changes between epochs,
    runs or resumes with the same seed.
    """
    if fraction <= 0:
        return torch.arange(total), torch.empty(0, dtype=torch.long)
    count = max(1, int(fraction * total + 1e-9))
    order = torch.randperm(total, generator=seeded_generator(seed, "validation-split"))
    return order[count:].sort().values, order[:count].sort().values


class DistributedEpochSampler(Sampler[int]):
    """One rank's share of another sampler's epoch, the way ``DistributedSampler`` shares a dataset.

    Every rank draws the same epoch order from ``(seed, epoch)`` (``sampler`` must be such a seeded
    sampler, e.g. :class:`EpochSubsetSampler`), pads it by repeating its first indices to a multiple
    of ``num_replicas`` so that all ranks run the same number of steps (DDP needs every rank in every
    all-reduce), and takes every ``num_replicas``-th index starting at ``rank``. Together the ranks see
    the whole epoch. :meth:`set_epoch` re-seeds the epoch, as with ``DistributedSampler``.

    Args:
        sampler: the single-process sampler whose order is shared.
        num_replicas: processes in the job.
        rank: this process's rank.
    """

    def __init__(self, sampler: Sampler[int], num_replicas: int, rank: int) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, num_replicas={num_replicas})")
        self.sampler = sampler
        self.num_replicas = num_replicas
        self.rank = rank

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (shared) order the next iteration splits."""
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        order = list(iter(self.sampler))
        if order:
            padding = len(self) * self.num_replicas - len(order)
            order += (order * (padding // len(order) + 1))[:padding]
        return iter(order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.num_replicas)  # type: ignore[arg-type]
