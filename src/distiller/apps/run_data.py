"""A run's data loaders, from the dataset flags that ``distiller classify`` and ``lottery imp`` share.

Both apps take the same ``DATASET_DIR``, ``-j``, ``--vs`` and ``--etrs/--evs/--etes`` flags and treat
the synthetic ``fake`` dataset the same way: it takes the shape and class count of the model, which
is therefore built for its architecture's own dataset.
"""

from __future__ import annotations

from typing import Any, Protocol

from torch import nn

from distiller.data import DataLoaders, load_data

__all__ = ["DataFlags", "load_run_data", "model_dataset"]


class DataFlags(Protocol):
    """The options :func:`load_run_data` reads (``ClassifierOptions`` and ``IMPOptions`` have them)."""

    data_dir: str | None
    workers: int
    validation_split: float
    effective_train_size: float
    effective_valid_size: float
    effective_test_size: float


def model_dataset(dataset: str) -> str | None:
    """The dataset to build the model for: ``None`` (the architecture's own) for ``fake`` data."""
    return None if dataset == "fake" else dataset


def load_run_data(
    flags: DataFlags,
    dataset: str,
    model: nn.Module,
    *,
    batch_size: int,
    deterministic: bool,
    seed: int,
    test_only: bool = False,
    **sampling: Any,
) -> DataLoaders:
    """The loaders of ``dataset`` as ``flags`` ask; ``fake`` data is shaped like ``model``'s input.

    Args:
        flags: the dataset folder, workers, validation split and effective sizes.
        dataset: a registered dataset name.
        model: the run's model (its ``input_shape`` and ``num_classes`` shape ``fake`` data).
        batch_size: samples per batch of this process.
        deterministic: also seed the loader workers.
        seed: the seed of every random draw of the data.
        test_only: build only the test loader.
        **sampling: ``num_replicas`` and ``rank`` of a distributed run (see :func:`~distiller.data.load_data`).
    """
    shape = tuple(model.input_shape) if dataset == "fake" else None
    return load_data(
        dataset,
        flags.data_dir,
        batch_size=batch_size,
        workers=flags.workers,
        validation_split=flags.validation_split,
        effective_train_size=flags.effective_train_size,
        effective_valid_size=flags.effective_valid_size,
        effective_test_size=flags.effective_test_size,
        deterministic=deterministic,
        seed=seed,
        input_shape=shape,
        num_classes=getattr(model, "num_classes", None) if shape else None,
        test_only=test_only,
        **sampling,
    )
