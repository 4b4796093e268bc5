"""The model registry: names, builders, native datasets.

Every architecture a user can name (``--arch resnet20_cifar``, ``arch:`` in a schedule) is a
:class:`ModelEntry` in :data:`MODELS`. An entry knows its native dataset, so ``create_model`` can
check that a model and a dataset fit together before any data is read, and whether torchvision
has ImageNet weights whose parameter names it shares.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from distiller.errors import ConfigError
from distiller.registry import Registry, did_you_mean

Builder = Callable[..., nn.Module]
Source = Literal["distiller", "torchvision", "user"]

#: Input shape (C, H, W) and number of classes of each dataset a model can be built for.
DATASET_INFO: dict[str, tuple[tuple[int, int, int], int]] = {
    "cifar10": ((3, 32, 32), 10),
    "mnist": ((1, 28, 28), 10),
    "fashionmnist": ((1, 28, 28), 10),
    "imagenet": ((3, 224, 224), 1000),
    "digits": ((1, 8, 8), 10),
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture.

    Attributes:
        name: the name users type (``resnet20_cifar``, ``torchvision.resnet18``).
        builder: ``builder(num_classes=N)`` returns a freshly initialized model.
        dataset: the native dataset (a key of :data:`DATASET_INFO`); it fixes the input shape.
        source: who defined the architecture: ``"distiller"``, ``"torchvision"`` or ``"user"``.
        pretrained_name: the torchvision model whose ImageNet weights load into this one, if any.
    """

    name: str
    builder: Builder
    dataset: str
    source: Source = "user"
    pretrained_name: str | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return DATASET_INFO[self.dataset][0]

    @property
    def num_classes(self) -> int:
        return DATASET_INFO[self.dataset][1]


MODELS: Registry[ModelEntry] = Registry("model")


def check_dataset(dataset: str) -> str:
    """``dataset`` lower-cased, or :class:`ConfigError` naming the known datasets."""
    key = dataset.lower()
    if key not in DATASET_INFO:
        raise ConfigError(
            f"Unknown dataset {dataset!r}.{did_you_mean(key, list(DATASET_INFO))} "
            f"Models can be built for: {', '.join(DATASET_INFO)}."
        )
    return key


def register_entry(entry: ModelEntry, replace: bool = False) -> ModelEntry:
    """Add a complete :class:`ModelEntry` to :data:`MODELS` (after checking its dataset)."""
    check_dataset(entry.dataset)
    MODELS.register(entry.name, entry, replace=replace)
    return entry


def register_model(
    name: str,
    dataset: str,
    builder: Builder | None = None,
    *,
    pretrained_name: str | None = None,
    replace: bool = False,
) -> Builder | Callable[[Builder], Builder]:
    """Register a user architecture under ``name`` so that ``create_model`` and ``--arch`` can build it.

    Use it directly, ``register_model("mynet", "cifar10", build_mynet)``, or as a decorator on a
    builder ``fn(num_classes=...) -> nn.Module``::

        @register_model("mynet", dataset="cifar10")
        def mynet(num_classes: int = 10) -> nn.Module: ...

    Args:
        name: the architecture name; a taken name raises :class:`ConfigError` unless ``replace``.
        dataset: the native dataset (a key of :data:`DATASET_INFO`), which fixes the input shape.
        builder: the builder; omit it to get a decorator.
        pretrained_name: a torchvision model whose weights have the same parameter names.
        replace: allow overriding an existing registration.

    Returns:
        The builder (so the decorator leaves the function usable), or the decorator.
    """

    def add(fn: Builder) -> Builder:
        register_entry(ModelEntry(name, fn, dataset.lower(), "user", pretrained_name), replace=replace)
        return fn

    return add(builder) if builder is not None else add


def builtin_model(name: str, dataset: str, pretrained_name: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator that registers one of Distiller's own architectures (not for users)."""

    def add(fn: Builder) -> Builder:
        register_entry(ModelEntry(name, fn, dataset, "distiller", pretrained_name))
        return fn

    return add


def dataset_for_arch(arch: str) -> str:
    """The dataset a model name is meant for.

    A registered name answers with its entry's native dataset. An unknown name falls back to the
    original's naming convention ('cifar' -> cifar10, 'mnist' -> mnist, 'digits' -> digits, else
    imagenet), so that old checkpoints and scripts keep the dataset they implied.
    """
    if arch in MODELS:
        return MODELS.get(arch).dataset
    lowered = arch.lower()
    for marker, dataset in (("cifar", "cifar10"), ("mnist", "mnist"), ("digits", "digits")):
        if marker in lowered:
            return dataset
    return "imagenet"


def list_models(dataset: str | None = None) -> list[str]:
    """Registered model names, sorted; with ``dataset``, only those whose input shape fits it."""
    if dataset is None:
        return MODELS.names()
    shape = DATASET_INFO[check_dataset(dataset)][0]
    return [name for name, entry in MODELS.items() if entry.input_shape == shape]
