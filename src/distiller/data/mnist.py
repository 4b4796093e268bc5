"""MNIST and Fashion-MNIST in torchvision's raw layout (``DATASET_DIR/MNIST/raw/...``).

torchvision parses the idx files straight into a uint8 tensor, which we keep and transform as
tensors (no per-sample PIL images). ``DATASET_DIR`` may be the folder holding ``MNIST/`` or the
``MNIST/`` folder itself. The download is attempted only when the files are absent. As in the
original Distiller there is no augmentation, only normalization.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from distiller.data.specs import DatasetRequest, DatasetSpec
from distiller.data.tensor_dataset import TensorImageDataset
from distiller.data.transforms import normalized
from distiller.errors import DataError

if TYPE_CHECKING:
    from torchvision.datasets import MNIST

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
FASHION_MEAN, FASHION_STD = (0.2860,), (0.3530,)


def _root(data_dir: Path, folder: str) -> Path:
    """The directory torchvision expects as ``root`` (the parent of ``MNIST/``)."""
    if data_dir.name == folder and (data_dir / "raw").is_dir() and not (data_dir / folder).is_dir():
        return data_dir.parent
    return data_dir


def _load(class_name: str, data_dir: Path, train: bool) -> MNIST:
    from torchvision import datasets

    cls: type[MNIST] = getattr(datasets, class_name)
    root = _root(data_dir, class_name)
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError:
        pass  # files absent: fall through to the download, which users without the data rely on
    try:
        return cls(str(root), train=train, download=True)
    except Exception as err:
        files = ", ".join(name.rsplit(".", 1)[0] for name, _ in cls.resources)
        raise DataError(
            f"No {cls.__name__} data in {root}: expected {root}/{cls.__name__}/raw/ with {files} "
            f"(uncompressed idx files), and downloading them failed ({type(err).__name__}: {err}). "
            "Put the files there, or run once with internet access."
        ) from err


def _builder(class_name: str, mean: tuple[float, ...], std: tuple[float, ...]):
    """A builder for torchvision's ``class_name`` (``MNIST`` or a dataset in its layout)."""

    def build(request: DatasetRequest) -> tuple[TensorImageDataset | None, TensorImageDataset | None]:
        assert request.data_dir is not None
        data_dir, transform = request.data_dir, normalized(mean, std)

        def split(train: bool, needed: bool) -> TensorImageDataset | None:
            if not needed:
                return None
            dataset = _load(class_name, data_dir, train)
            images = dataset.data.unsqueeze(1).contiguous()
            return TensorImageDataset(images, torch.as_tensor(dataset.targets), transform, dataset.classes)

        return split(True, request.need_train), split(False, request.need_test)

    build.__name__ = f"build_{class_name.lower()}"
    return build


MNIST_SPEC = DatasetSpec(
    name="mnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    needs_dir=True,
    downloadable=True,
    builder=_builder("MNIST", MNIST_MEAN, MNIST_STD),
    layout="MNIST/raw/ with torchvision's four idx files",
)
FASHION_MNIST_SPEC = DatasetSpec(
    name="fashionmnist",
    input_shape=(1, 28, 28),
    num_classes=10,
    needs_dir=True,
    downloadable=True,
    builder=_builder("FashionMNIST", FASHION_MEAN, FASHION_STD),
    layout="FashionMNIST/raw/ with torchvision's four idx files",
)
