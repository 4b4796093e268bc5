"""CIFAR-10, from torchvision's python batches or from PNG class folders.

Two layouts of ``DATASET_DIR`` are read:

* ``cifar-10-batches-py/`` (what ``torchvision.datasets.CIFAR10`` downloads), or ``DATASET_DIR``
  being that folder itself;
* ``train/`` and ``test/`` with one sub-folder of images per class (``ImageFolder`` layout, e.g.
  the PNG export of the dataset). Class ids are the sorted folder names, which for CIFAR-10's
  names are its official label ids. Decoding is cached (see :mod:`distiller.data.image_cache`).

A folder with neither layout gets torchvision's download, so users keep the usual way to fetch the
data. Transforms follow the original Distiller: RandomCrop(32, padding=4) + horizontal flip for
training, normalization with mean 0.5 / std 0.5 for both.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from distiller.data.image_cache import load_image_folder
from distiller.data.specs import DatasetRequest, DatasetSpec
from distiller.data.tensor_dataset import TensorImageDataset
from distiller.data.transforms import normalized
from distiller.errors import DataError

if TYPE_CHECKING:
    from torchvision.transforms import v2

BATCHES = "cifar-10-batches-py"
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def cifar10_transform(kind: str) -> v2.Compose:
    """The original's CIFAR-10 pipelines, on uint8 (3, 32, 32) tensors."""
    from torchvision.transforms import v2

    augment = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()] if kind == "train" else []
    return normalized(MEAN, STD, augment)


def _from_batches(root: Path, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(str(root), train=train, download=download)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.long), list(dataset.classes)


@lru_cache(maxsize=2)
def _cached_batches(root: str, train: bool, stamp: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Read once per process: the loader builds the train split twice (train and eval transforms).

    ``stamp`` (the folder's modification time) keys the cache, so replaced files are read again.
    """
    return _from_batches(Path(root), train, download=False)


def _from_folder(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    arrays = load_image_folder(folder, channels=3)
    if tuple(arrays.images.shape[1:]) != (3, 32, 32):
        raise DataError(f"CIFAR-10 images in {folder} are {tuple(arrays.images.shape[1:])}, expected (3, 32, 32).")
    return arrays.images, arrays.labels, list(arrays.classes)


def _download(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    try:
        return _from_batches(root, train, download=True)
    except Exception as err:
        raise DataError(
            f"No CIFAR-10 data in {root}: expected {root}/{BATCHES}/ (torchvision's python batches) or "
            f"{root}/train/ and {root}/test/ class folders of images, and downloading it there failed "
            f"({type(err).__name__}: {err}). Put the data in that folder, or run once with internet access."
        ) from err


def _load_split(root: Path, train: bool) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    if root.name == BATCHES and (root / "batches.meta").is_file():
        root = root.parent
    if (root / BATCHES).is_dir():
        try:
            return _cached_batches(str(root.resolve()), train, (root / BATCHES).stat().st_mtime_ns)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataError(f"CIFAR-10 batches in {root / BATCHES} are incomplete or corrupted: {err}") from err
    split = "train" if train else "test"
    if (root / "train").is_dir() or (root / "test").is_dir():
        if not (root / split).is_dir():
            raise DataError(f"CIFAR-10 folder {root} has no {split}/ folder of class sub-folders.")
        return _from_folder(root / split)
    return _download(root, train)


def build_cifar10(request: DatasetRequest) -> tuple[TensorImageDataset | None, TensorImageDataset | None]:
    """CIFAR-10 train and test splits with the requested transforms."""
    assert request.data_dir is not None
    data_dir, transform = request.data_dir, cifar10_transform(request.transform)

    def split(train: bool, needed: bool) -> TensorImageDataset | None:
        if not needed:
            return None
        images, labels, classes = _load_split(data_dir, train)
        return TensorImageDataset(images, labels, transform, classes)

    train_set, test_set = split(True, request.need_train), split(False, request.need_test)
    if train_set is not None and test_set is not None and train_set.classes != test_set.classes:
        raise DataError(
            f"CIFAR-10 train and test class folders differ in {request.data_dir}: "
            f"{train_set.classes} vs {test_set.classes}."
        )
    return train_set, test_set


CIFAR10_SPEC = DatasetSpec(
    name="cifar10",
    input_shape=(3, 32, 32),
    num_classes=10,
    needs_dir=True,
    downloadable=True,
    builder=build_cifar10,
    layout=f"{BATCHES}/ (torchvision's python batches) or train/ and test/ folders of per-class images",
)
