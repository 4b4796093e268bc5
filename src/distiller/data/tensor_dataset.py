"""A dataset over in-memory image tensors.

Small datasets (CIFAR-10, MNIST, digits, fake) fit in memory as one uint8 tensor. Indexing that
tensor and transforming the sample as a tensor avoids torchvision's per-sample PIL round trip,
which dominates the loading time of such datasets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from distiller.errors import DataError

Transform = Callable[[torch.Tensor], torch.Tensor]


class TensorImageDataset(Dataset):
    """Samples ``(transform(images[i]), int(labels[i]))``.

    Args:
        images: (N, C, H, W) tensor, typically uint8.
        labels: (N,) integer class ids.
        transform: applied to each (C, H, W) sample; ``None`` returns it unchanged.
        classes: class names, index = class id (like torchvision's ``classes``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        transform: Transform | None = None,
        classes: Sequence[str] | None = None,
    ) -> None:
        if images.ndim != 4:
            raise DataError(f"Expected images of shape (N, C, H, W), got {tuple(images.shape)}.")
        if labels.shape != (len(images),):
            raise DataError(f"Expected {len(images)} labels, got a tensor of shape {tuple(labels.shape)}.")
        self.images = images
        self.labels = labels.to(torch.long)
        self.transform = transform
        self.classes = list(classes) if classes is not None else None

    @property
    def targets(self) -> list[int]:
        """The labels as a list, as torchvision datasets expose them."""
        return self.labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])
