"""ImageNet (or any ImageNet-style folder): ``DATASET_DIR/train`` and ``DATASET_DIR/val``.

Each split is a ``torchvision.datasets.ImageFolder``. Transforms are the original Distiller's:
RandomResizedCrop + horizontal flip for training; Resize(256) + CenterCrop(224) for evaluation;
ImageNet mean/std. ``input_shape`` may ask for another square crop (Inception's 299 resizes to 336,
as the original did; other sizes keep the 224/256 ratio). The class count is the number of class
folders, so subsets such as Imagenette work unchanged.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from distiller.data.specs import DatasetRequest, DatasetSpec
from distiller.data.transforms import normalized
from distiller.errors import ConfigError, DataError

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_RESIZE = {224: 256, 299: 336}


def imagenet_transform(kind: str, crop: int = 224) -> v2.Compose:
    """The original's ImageNet pipelines for a square ``crop``, on PIL images."""
    from torchvision.transforms import v2

    if kind == "train":
        augment = [v2.RandomResizedCrop(crop), v2.RandomHorizontalFlip()]
    else:
        augment = [v2.Resize(_RESIZE.get(crop, round(crop * 256 / 224))), v2.CenterCrop(crop)]
    return normalized(MEAN, STD, augment)


@lru_cache(maxsize=4)
def _scanned(path: str, stamp: int) -> ImageFolder:
    """Scan a split folder once per process: scanning ImageNet's 1.28M files takes many seconds, and
    the loader builds the train split twice (train and eval transforms). ``stamp`` (the folder's
    modification time) keys the cache, so added or removed class folders are scanned again.
    """
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(path)
    except (FileNotFoundError, OSError) as err:
        raise DataError(f"Cannot read ImageNet split {path}: {err}") from err


def _folder(root: Path, split: str, transform: v2.Compose) -> ImageFolder:
    path = root / split
    if not path.is_dir():
        raise DataError(
            f"ImageNet folder {root} has no {split}/ sub-folder: expected {root}/train/<class>/<images> "
            f"and {root}/val/<class>/<images>."
        )
    dataset = copy.copy(_scanned(str(path.resolve()), path.stat().st_mtime_ns))  # shares the sample list
    dataset.transform = transform
    return dataset


def build_imagenet(request: DatasetRequest):
    """ImageFolder train and val splits with the requested transforms."""
    assert request.data_dir is not None
    channels, height, width = request.input_shape
    if channels != 3 or height != width:
        raise ConfigError(f"Dataset 'imagenet' needs a (3, S, S) input shape, got {request.input_shape}.")
    transform = imagenet_transform(request.transform, height)
    train = _folder(request.data_dir, "train", transform) if request.need_train else None
    test = _folder(request.data_dir, "val", transform) if request.need_test else None
    if train is not None and test is not None and train.classes != test.classes:
        raise DataError(f"ImageNet train/ and val/ class folders differ in {request.data_dir}.")
    return train, test


IMAGENET_SPEC = DatasetSpec(
    name="imagenet",
    input_shape=(3, 224, 224),
    num_classes=1000,
    needs_dir=True,
    builder=build_imagenet,
    layout="train/ and val/ folders of per-class images (ImageFolder layout)",
    shape_configurable=True,
    classes_configurable=True,
)
