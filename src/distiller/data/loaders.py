"""``load_data``: train / validation / test loaders for a registered dataset.

Semantics follow the original Distiller, with its flaws fixed:

* The validation set is a fixed ``validation_split`` slice of the *training* split, chosen from
  ``seed``. Unlike the original, it is read with evaluation transforms (no augmentation): the train
  split is built twice, augmented for training and plain for validation, indexed alike.
* ``validation_split == 0`` makes the test loader the validation loader (the original's ``--vs 0``).
* Effective sizes (a fraction <= 1.0 or a sample count > 1) shrink each split. The training subset
  is redrawn every epoch and shuffled, both from ``(seed, epoch)`` only (see
  :mod:`distiller.data.samplers`), so a resumed run replays the uninterrupted run's batches after
  :meth:`DataLoaders.set_epoch`. Validation and test subsets are drawn once and read in order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from distiller.data.samplers import (
    DistributedEpochSampler,
    EpochSubsetSampler,
    FixedSubsetSampler,
    derive_seed,
    split_indices,
)
from distiller.data.sizes import check_size, resolve_size
from distiller.data.specs import DATASETS, DatasetRequest, DatasetSpec, InputShape
from distiller.errors import ConfigError, DataError


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: seed NumPy and ``random`` from the worker's torch seed.

    PyTorch seeds each worker's torch generator from the loader's generator; NumPy and ``random``
    would otherwise start from the state forked from the parent, identical in every worker.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


@dataclass(frozen=True)
class LoaderOptions:
    """How every loader of one :func:`load_data` call is configured."""

    batch_size: int
    workers: int = 0
    deterministic: bool = False
    seed: int = 0

    def loader(self, dataset: Dataset, sampler: Sampler[int], batch_size: int | None = None) -> DataLoader:
        """A loader over ``dataset`` in ``sampler``'s order; pinned memory only where CUDA exists."""
        generator = None
        if self.deterministic:  # seeds the workers' torch generators; reseeded per epoch by set_epoch
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "workers", 0))
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            sampler=sampler,
            num_workers=self.workers,
            pin_memory=torch.cuda.is_available(),
            worker_init_fn=seed_worker if self.deterministic else None,
            generator=generator,
        )


@dataclass
class DataLoaders:
    """The loaders of one dataset and what a model needs to know about it.

    Attributes:
        train: augmented training split minus validation; ``None`` with ``test_only``.
        valid: validation loader; the test loader itself when ``validation_split`` is 0;
            ``None`` with ``test_only``.
        test: test loader.
        input_shape: (C, H, W) of one sample.
        num_classes: number of classes.
        dataset: the dataset's registry name.
        classes: class names when the dataset provides them.
        train_eval_set: the train split with evaluation transforms (calibration, statistics).
        train_indices: indices of ``train_eval_set`` that belong to training (validation removed).
        options: batch size, workers, seed: how the loaders were made (reused for new loaders).
    """

    train: DataLoader | None
    valid: DataLoader | None
    test: DataLoader
    input_shape: InputShape
    num_classes: int
    dataset: str
    classes: tuple[str, ...] | None = None
    train_eval_set: Dataset | None = field(default=None, repr=False)
    train_indices: torch.Tensor | None = field(default=None, repr=False)
    options: LoaderOptions = field(default_factory=lambda: LoaderOptions(256), repr=False)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose training subset, order and worker seeds the next pass uses.

        Call it at the start of every epoch (and once with the resumed epoch after a restart).
        """
        for loader in (self.train, self.valid, self.test):
            if loader is not None and hasattr(loader.sampler, "set_epoch"):
                loader.sampler.set_epoch(epoch)
        if self.train is not None and self.train.generator is not None:
            self.train.generator.manual_seed(derive_seed(self.options.seed, "workers", epoch))

    def calibration_loader(
        self, size: float | int, *, seed: int | None = None, batch_size: int | None = None
    ) -> DataLoader:
        """A fixed, seeded subset of the training split (validation removed), evaluation transforms.

        This is what calibration, activation statistics and search rewards read (DESIGN §7): never
        the test set, never augmented. ``size`` is a fraction (<= 1.0) or a sample count (> 1).
        """
        if self.train_eval_set is None or self.train_indices is None:
            raise ConfigError("No training split was loaded (test_only=True); calibration reads the training split.")
        count = resolve_size(size, len(self.train_indices), "calibration size")
        sampler = FixedSubsetSampler(
            self.train_indices, count, seed=self.options.seed if seed is None else seed, stream="calibration"
        )
        return self.options.loader(self.train_eval_set, sampler, batch_size)


def _data_dir(spec: DatasetSpec, data_dir: str | Path | None) -> Path | None:
    """The checked dataset folder; a clear :class:`DataError` where it is missing."""
    if data_dir is None or str(data_dir) == "":
        if spec.needs_dir:
            raise DataError(
                f"Dataset {spec.name!r} needs DATASET_DIR, the folder holding its files "
                f"({spec.layout or 'see the dataset documentation'}). Pass it as the DATASET_DIR argument "
                "(data_dir= in Python)."
            )
        return None
    path = Path(data_dir).expanduser()
    if spec.needs_dir and not path.exists():
        download = " or create it empty to have the dataset downloaded into it" if spec.downloadable else ""
        raise DataError(
            f"Dataset folder {path} does not exist (dataset {spec.name!r}, expected "
            f"{spec.layout or 'its files'}). Fix the DATASET_DIR path{download}."
        )
    if spec.needs_dir and not path.is_dir():
        raise DataError(f"Dataset path {path} is not a folder (dataset {spec.name!r}).")
    return path


def _check_arguments(batch_size: int, workers: int, validation_split: float, sizes: dict[str, float]) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"workers must be a non-negative integer, got {workers!r}.")
    if not isinstance(validation_split, (int, float)) or not 0 <= validation_split < 1:
        raise ConfigError(f"validation_split must be a fraction in [0, 1), got {validation_split!r}.")
    for name, value in sizes.items():
        check_size(value, name)


def _build(spec: DatasetSpec, request: DatasetRequest) -> tuple[Dataset | None, Dataset | None]:
    train, test = spec.builder(request)
    for split, dataset, needed in (("training", train, request.need_train), ("test", test, request.need_test)):
        if needed and (dataset is None or _length(dataset) == 0):
            raise DataError(f"Dataset {spec.name!r} has an empty {split} split ({request.data_dir or 'no folder'}).")
    return train, test


def _length(dataset: Dataset) -> int:
    return len(dataset)  # type: ignore[arg-type]  # map-style datasets define __len__


def _class_names(*datasets: Dataset | None) -> tuple[str, ...] | None:
    for dataset in datasets:
        classes = getattr(dataset, "classes", None)
        if classes is not None:
            return tuple(str(c) for c in classes)
    return None


def load_data(
    dataset: str | DatasetSpec,
    data_dir: str | Path | None = None,
    *,
    batch_size: int = 256,
    workers: int = 0,
    validation_split: float = 0.1,
    effective_train_size: float | int = 1.0,
    effective_valid_size: float | int = 1.0,
    effective_test_size: float | int = 1.0,
    deterministic: bool = False,
    seed: int = 0,
    input_shape: tuple[int, int, int] | None = None,
    num_classes: int | None = None,
    test_only: bool = False,
    num_replicas: int = 1,
    rank: int = 0,
) -> DataLoaders:
    """Build the train, validation and test loaders of ``dataset``.

    Args:
        dataset: a registered name (see ``DATASETS.names()``) or a :class:`DatasetSpec`.
        data_dir: the dataset folder (ignored by datasets that need none).
        batch_size: samples per batch, for all loaders.
        workers: loader worker processes (0 loads in the main process).
        validation_split: fraction of the training split held out for validation, fixed by ``seed``.
        effective_train_size: fraction (<= 1.0) or count (> 1) of training samples per epoch,
            redrawn every epoch.
        effective_valid_size: fraction or count of the validation samples, drawn once (unused when
            ``validation_split`` is 0: validation is then the test loader).
        effective_test_size: fraction or count of the test samples, drawn once.
        deterministic: also seed loader workers (torch from a per-epoch generator, NumPy and
            ``random`` through :func:`seed_worker`), so augmentations in workers are reproducible.
        seed: the seed of every random choice made here.
        input_shape: another (C, H, W) for datasets that support it (``fake``, ``imagenet`` crops).
        num_classes: another class count for datasets that support it (``fake``).
        test_only: build only the test loader.
        num_replicas: processes of a distributed (DDP) job sharing the training split: each epoch's
            seeded subset and order are drawn alike on every process and split among them
            (:class:`~distiller.data.samplers.DistributedEpochSampler`). Validation and test loaders
            are not split: every process evaluates all of it.
        rank: this process's rank among ``num_replicas``.

    Returns:
        The loaders; call :meth:`DataLoaders.set_epoch` at the start of every epoch.

    Raises:
        ConfigError: unknown dataset name or invalid argument.
        DataError: missing folder, missing or unreadable files.
    """
    spec = dataset if isinstance(dataset, DatasetSpec) else DATASETS.get(dataset)
    sizes = {
        "effective_train_size": effective_train_size,
        "effective_valid_size": effective_valid_size,
        "effective_test_size": effective_test_size,
    }
    _check_arguments(batch_size, workers, validation_split, sizes)
    shape, n_classes = spec.resolve(input_shape, num_classes)
    root = _data_dir(spec, data_dir)
    options = LoaderOptions(batch_size, workers, deterministic, seed)

    train_eval, test_set = _build(spec, DatasetRequest(root, "eval", shape, n_classes, need_train=not test_only))
    assert test_set is not None
    classes = _class_names(test_set, train_eval)
    if classes is not None and len(classes) != n_classes:
        if num_classes is not None or not spec.classes_configurable:
            raise DataError(
                f"Dataset {spec.name!r} in {root} has {len(classes)} classes, expected {n_classes}: "
                "check that DATASET_DIR points at the right dataset."
            )
        n_classes = len(classes)

    test_count = resolve_size(effective_test_size, _length(test_set), "effective_test_size")
    test = options.loader(test_set, FixedSubsetSampler(range(_length(test_set)), test_count, seed=seed, stream="test"))
    loaders = DataLoaders(None, None, test, shape, n_classes, spec.name, classes, options=options)
    if test_only:
        return loaders

    assert train_eval is not None
    train_aug, _ = _build(spec, DatasetRequest(root, "train", shape, n_classes, need_test=False))
    assert train_aug is not None
    total = _length(train_eval)
    if _length(train_aug) != total:
        raise DataError(
            f"Dataset {spec.name!r}: its train split has {_length(train_aug)} samples with training transforms "
            f"but {total} with evaluation transforms; its builder must index both alike."
        )
    train_indices, valid_indices = split_indices(total, validation_split, seed)
    if len(train_indices) == 0:
        raise DataError(f"validation_split={validation_split} leaves no training samples out of {total}.")
    train_count = resolve_size(effective_train_size, len(train_indices), "effective_train_size")
    train_sampler: Sampler[int] = EpochSubsetSampler(train_indices, train_count, seed=seed)
    if num_replicas > 1:
        train_sampler = DistributedEpochSampler(train_sampler, num_replicas, rank)
    loaders.train = options.loader(train_aug, train_sampler)
    if len(valid_indices) == 0:
        loaders.valid = test
    else:
        valid_count = resolve_size(effective_valid_size, len(valid_indices), "effective_valid_size")
        loaders.valid = options.loader(
            train_eval, FixedSubsetSampler(valid_indices, valid_count, seed=seed, stream="valid")
        )
    loaders.train_eval_set = train_eval
    loaders.train_indices = train_indices
    loaders.set_epoch(0)
    return loaders
