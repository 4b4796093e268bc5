"""The built-in loaders on the real CIFAR-10 and MNIST copies in ../shared/data (skipped when absent)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torchvision.io import decode_image

from distiller.data import image_cache, load_data
from shared_data import CIFAR10_DIR, MNIST_DIR, require

pytestmark = pytest.mark.realdata

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """One cache folder for the module, so the 20,000 PNGs are decoded once, not in the user's home."""
    cache = tmp_path_factory.mktemp("distiller-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(image_cache.CACHE_ENV, str(cache))
        image_cache.clear_memory_cache()
        yield cache
    image_cache.clear_memory_cache()


def test_cifar10_test_folder_and_cache(cache_dir: Path) -> None:
    root = require(CIFAR10_DIR)
    loaders = load_data("cifar10", root, batch_size=1000, test_only=True)
    test = loaders.test.dataset
    assert len(test) == 10_000 and loaders.classes == CIFAR_CLASSES
    assert test.labels.tolist() == [c for c in range(10) for _ in range(1000)]  # class folders, sorted names

    # labels and pixels agree with the official test order (test_order.csv), row by row
    with open(root / "test_order.csv", newline="") as handle:
        rows = sorted(csv.DictReader(handle), key=lambda row: row["path"])  # ImageFolder's order
    assert [int(row["label"]) for row in rows] == test.labels.tolist()
    official_first = next(i for i, row in enumerate(rows) if row["index"] == "0")
    assert rows[official_first]["path"].endswith("domestic_cat_s_000907.png")
    assert torch.equal(test.images[official_first], decode_image(str(root / rows[official_first]["path"])))

    [cache_file] = cache_dir.glob("image-folder-*.npz")
    image_cache.clear_memory_cache()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(image_cache, "_decode", lambda *a, **k: pytest.fail("decoded although cached"))
        again = load_data("cifar10", root, test_only=True).test.dataset
    assert torch.equal(again.images, test.images) and cache_file.exists()
    batches = [images for images, _ in loaders.test]
    assert batches[0].shape == (1000, 3, 32, 32)
    channel_means = torch.cat(batches).mean(dim=(0, 2, 3))  # normalized with mean 0.5, std 0.5
    assert torch.allclose(channel_means, 2 * torch.tensor([0.4942, 0.4851, 0.4504]) - 1, atol=1e-3)


def test_cifar10_validation_uses_eval_transforms(cache_dir: Path) -> None:
    root = require(CIFAR10_DIR)
    loaders = load_data("cifar10", root, batch_size=256, validation_split=0.1, seed=0)
    total = len(loaders.train_eval_set)
    assert total >= 10_000  # the shared copy may grow to the full 50,000
    assert len(loaders.valid.sampler) == total // 10 and len(loaders.train.sampler) == total - total // 10
    assert not set(loaders.valid.sampler.indices.tolist()) & set(loaders.train_indices.tolist())
    index = int(loaders.valid.sampler.indices[0])
    raw = loaders.train_eval_set.images[index]
    first, second = loaders.valid.dataset[index][0], loaders.valid.dataset[index][0]
    assert torch.equal(first, second)
    assert torch.allclose(first, (raw.float() / 255 - 0.5) / 0.5, atol=1e-6)
    augmented = [loaders.train.dataset[index][0] for _ in range(8)]
    assert any(not torch.allclose(a, first, atol=1e-6) for a in augmented)


@pytest.mark.parametrize("subfolder", ["", "MNIST"])
def test_mnist(subfolder: str) -> None:
    root = require(MNIST_DIR) / subfolder
    loaders = load_data("mnist", root, batch_size=1000, validation_split=0)
    assert len(loaders.train_eval_set) == 60_000 and len(loaders.test.dataset) == 10_000
    assert loaders.input_shape == (1, 28, 28) and loaders.num_classes == 10
    assert loaders.train_eval_set.labels[:5].tolist() == [5, 0, 4, 1, 9]
    images, labels = next(iter(loaders.test))
    assert images.shape == (1000, 1, 28, 28) and labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert loaders.valid is loaders.test
    assert abs(float(loaders.train_eval_set[0][0].mean()) - float(images.mean())) < 0.5
