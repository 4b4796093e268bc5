"""The 8x8 handwritten digits, embedded in the package (no download, no folder).

Provenance: the UCI "Optical Recognition of Handwritten Digits" data set (Alpaydin & Kaynak, 1998;
UCI ML Repository, CC BY 4.0), test part, as packaged by scikit-learn's
``sklearn.datasets.load_digits``: 1,797 grayscale 8x8 images with values 0..16 and labels 0..9.
``digits.npz`` was written once from scikit-learn 1.9.1 and holds ``images`` (uint8, 1797x8x8),
``labels`` (int64) and ``is_test`` (bool): a stratified 80/20 split made with
``train_test_split(test_size=0.2, stratify=labels, random_state=0)``, stored rather than recomputed so
that it never changes with library versions (360 test images, 35-37 per class; sha256 of the image
bytes 8f26b2bd9d13..., of the label bytes a3c91c262edd...).

Samples are scaled by 1/16 and normalized with the train split's mean and std. There is no
augmentation, on purpose: at 8x8 a one-pixel shift moves 1/8 of the field of view, and without it a
small network reaches >= 97% test accuracy in a few seconds on a CPU, which is what the demo needs.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from distiller.data.specs import DatasetRequest, DatasetSpec
from distiller.data.tensor_dataset import TensorImageDataset

CLASSES = tuple(str(i) for i in range(10))


@lru_cache(maxsize=1)
def _arrays() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normalized float images (N, 1, 8, 8), labels, is_test) of all 1,797 samples."""
    with resources.files("distiller.data").joinpath("digits.npz").open("rb") as handle, np.load(handle) as data:
        images = torch.from_numpy(data["images"].astype(np.float32) / 16.0).unsqueeze(1)
        labels = torch.from_numpy(data["labels"].astype(np.int64))
        is_test = torch.from_numpy(data["is_test"].astype(bool))
    train = images[~is_test]
    images = (images - train.mean()) / train.std()
    return images, labels, is_test


def build_digits(request: DatasetRequest) -> tuple[TensorImageDataset | None, TensorImageDataset | None]:
    """The fixed train (1,437) and test (360) splits; both transform kinds are the same."""
    images, labels, is_test = _arrays()
    train = TensorImageDataset(images[~is_test], labels[~is_test], None, CLASSES) if request.need_train else None
    test = TensorImageDataset(images[is_test], labels[is_test], None, CLASSES) if request.need_test else None
    return train, test


DIGITS_SPEC = DatasetSpec(
    name="digits",
    input_shape=(1, 8, 8),
    num_classes=10,
    needs_dir=False,
    builder=build_digits,
    layout="embedded in the package (scikit-learn's 8x8 digits)",
)
