"""Dataset specifications and the dataset registry.

A :class:`DatasetSpec` says what a dataset looks like (input shape, class count, whether it needs a
folder) and how to build its two splits. Loading, splitting and sampling live in
:mod:`distiller.data.loaders`, so a user-registered dataset gets the validation split, effective
sizes and resumable sampling for free: its builder only returns the train and test datasets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch.utils.data import Dataset

from distiller.errors import ConfigError
from distiller.registry import Registry

TransformKind = Literal["train", "eval"]
"""``"train"``: with augmentation; ``"eval"``: deterministic (validation, test, calibration)."""

InputShape = tuple[int, int, int]


@dataclass(frozen=True)
class DatasetRequest:
    """What :func:`load_data` asks a builder for.

    Attributes:
        data_dir: the dataset folder, already checked to exist when the spec ``needs_dir``
            (``None`` for datasets that need none and were given none).
        transform: which transforms to attach.
        input_shape: the (C, H, W) of one sample: the spec's, or the caller's for configurable specs.
        num_classes: the spec's class count, or the caller's for configurable specs.
        need_train: build the train split (``False`` with ``test_only``; the builder may return None).
        need_test: build the test split (``False`` when only the augmented train split is wanted).
    """

    data_dir: Path | None
    transform: TransformKind
    input_shape: InputShape
    num_classes: int
    need_train: bool = True
    need_test: bool = True


DatasetPair = tuple[Dataset | None, Dataset | None]
Builder = Callable[[DatasetRequest], DatasetPair]


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its shape, class count and a builder of its (train, test) splits.

    The builder must index both splits in the same order whatever the transform kind: the loader
    builds the train split twice (augmented for training, evaluation transforms for validation)
    and addresses both with the same indices.

    Attributes:
        name: the registry name (``--dataset`` / model metadata).
        input_shape: (C, H, W) of one sample after the evaluation transforms.
        num_classes: number of classes.
        needs_dir: whether a ``DATASET_DIR`` is required.
        builder: ``builder(request) -> (train_dataset, test_dataset)``; samples are ``(tensor, int)``.
        layout: one line describing the expected files, quoted in error messages.
        shape_configurable: the caller may ask for another ``input_shape`` (e.g. crop size).
        classes_configurable: the class count may differ from ``num_classes`` (caller's choice, or
            the number of class folders found).
        downloadable: the builder downloads the data into an existing, empty ``DATASET_DIR``.
    """

    name: str
    input_shape: InputShape
    num_classes: int
    needs_dir: bool
    builder: Builder
    layout: str = ""
    shape_configurable: bool = False
    classes_configurable: bool = False
    downloadable: bool = False

    def resolve(self, input_shape: tuple[int, ...] | None, num_classes: int | None) -> tuple[InputShape, int]:
        """The shape and class count to build with; rejects overrides the dataset cannot honour."""
        shape = self.input_shape if input_shape is None else tuple(int(d) for d in input_shape)
        if len(shape) != 3 or any(d <= 0 for d in shape):
            raise ConfigError(f"input_shape must be (channels, height, width) of positive sizes, got {input_shape!r}.")
        if shape != self.input_shape and not self.shape_configurable:
            raise ConfigError(
                f"Dataset {self.name!r} has input shape {self.input_shape}; it cannot produce {shape}. "
                "Drop the input_shape override or use a dataset that supports it (e.g. 'fake')."
            )
        classes = self.num_classes if num_classes is None else int(num_classes)
        if classes <= 0:
            raise ConfigError(f"num_classes must be positive, got {num_classes!r}.")
        if classes != self.num_classes and not self.classes_configurable:
            raise ConfigError(
                f"Dataset {self.name!r} has {self.num_classes} classes; it cannot produce {classes}. "
                "Drop the num_classes override or use a dataset that supports it (e.g. 'fake')."
            )
        return shape, classes  # type: ignore[return-value]


DATASETS: Registry[DatasetSpec] = Registry("dataset")
"""All known datasets by name. Register your own with :func:`register_dataset`."""


def register_dataset(
    name: str,
    *,
    input_shape: InputShape,
    num_classes: int,
    needs_dir: bool = True,
    layout: str = "",
    shape_configurable: bool = False,
    classes_configurable: bool = False,
    replace: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering ``builder`` as dataset ``name``; returns the builder unchanged.

    Example::

        @register_dataset("mydata", input_shape=(3, 64, 64), num_classes=5)
        def build_mydata(request: DatasetRequest):
            return MyDataset(request.data_dir / "train", request.transform), MyDataset(...)
    """

    def add(builder: Builder) -> Builder:
        spec = DatasetSpec(
            name=name,
            input_shape=tuple(input_shape),  # type: ignore[arg-type]
            num_classes=num_classes,
            needs_dir=needs_dir,
            builder=builder,
            layout=layout,
            shape_configurable=shape_configurable,
            classes_configurable=classes_configurable,
        )
        DATASETS.register(name, spec, replace=replace)
        return builder

    return add
