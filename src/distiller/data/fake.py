"""A tiny synthetic dataset for smoke tests and examples that need no files.

Like ``torchvision.datasets.FakeData`` but deterministic and learnable: every class has a random
prototype image, and a sample is the average of its class prototype and uniform noise, all drawn
from fixed seeds. The same ``input_shape`` and ``num_classes`` always give the same data.
"""

from __future__ import annotations

import torch

from distiller.data.samplers import seeded_generator
from distiller.data.specs import DatasetRequest, DatasetSpec
from distiller.data.tensor_dataset import TensorImageDataset
from distiller.data.transforms import normalized

TRAIN_SIZE = 256
TEST_SIZE = 64
_SEED = 0


def _images(shape: tuple[int, int, int], num_classes: int, count: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    prototypes = torch.randint(0, 256, (num_classes, *shape), generator=seeded_generator(_SEED, "fake-prototypes"))
    generator = seeded_generator(_SEED, "fake", split)
    labels = torch.randint(0, num_classes, (count,), generator=generator)
    noise = torch.randint(0, 256, (count, *shape), generator=generator)
    return ((prototypes[labels] + noise) // 2).to(torch.uint8), labels


def build_fake(request: DatasetRequest) -> tuple[TensorImageDataset | None, TensorImageDataset | None]:
    """Fixed random train (256) and test (64) splits of the requested shape and class count."""
    from torchvision.transforms import v2

    channels = request.input_shape[0]
    augment = [v2.RandomHorizontalFlip()] if request.transform == "train" else []
    transform = normalized((0.5,) * channels, (0.5,) * channels, augment)
    classes = [str(i) for i in range(request.num_classes)]

    def split(name: str, count: int, needed: bool) -> TensorImageDataset | None:
        if not needed:
            return None
        images, labels = _images(request.input_shape, request.num_classes, count, name)
        return TensorImageDataset(images, labels, transform, classes)

    return split("train", TRAIN_SIZE, request.need_train), split("test", TEST_SIZE, request.need_test)


FAKE_SPEC = DatasetSpec(
    name="fake",
    input_shape=(3, 32, 32),
    num_classes=10,
    needs_dir=False,
    builder=build_fake,
    layout="no files: synthetic data",
    shape_configurable=True,
    classes_configurable=True,
)
