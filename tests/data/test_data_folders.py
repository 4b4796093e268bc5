"""Folder-based datasets on small synthetic folders: image cache, CIFAR-10 layouts, ImageNet, downloads."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision.io import decode_image, encode_png, write_file

from distiller.data import image_cache, load_data, load_image_folder
from distiller.errors import DataError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every cache file of these tests out of the user's home, and start with no memory cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(image_cache.CACHE_ENV, str(cache))
    image_cache.clear_memory_cache()
    yield cache
    image_cache.clear_memory_cache()


def write_images(root: Path, classes: list[str], per_class: int, size: tuple[int, int] = (32, 32), seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = torch.randint(0, 256, (3, *size), dtype=torch.uint8, generator=generator)
            write_file(str(root / name / f"img_{per_class - i:03d}.png"), encode_png(image))


def test_image_folder_matches_imagefolder(tmp_path: Path, cache_in_tmp: Path) -> None:
    from torchvision.datasets import ImageFolder

    root = tmp_path / "images"
    write_images(root, ["zebra", "ant", "moth"], 3, size=(5, 4))
    write_images(root / "ant" / "nested", ["deeper"], 2, size=(5, 4), seed=1)
    (root / "ant" / "notes.txt").write_text("not an image")
    arrays = load_image_folder(root)
    reference = ImageFolder(str(root))
    assert arrays.classes == ("ant", "moth", "zebra") == tuple(reference.classes)
    assert arrays.images.shape == (11, 3, 5, 4) and arrays.images.dtype == torch.uint8
    assert arrays.labels.tolist() == reference.targets
    for i, (path, _) in enumerate(reference.samples):
        assert torch.equal(arrays.images[i], decode_image(path))
    assert len(list(cache_in_tmp.glob("image-folder-*.npz"))) == 1


def test_cache_is_reused_and_invalidated(tmp_path: Path, cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "images"
    write_images(root, ["a", "b"], 2)
    first = load_image_folder(root)
    image_cache.clear_memory_cache()

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although a fresh cache exists")

    with monkeypatch.context() as patch:
        patch.setattr(image_cache, "_decode", no_decoding)
        cached = load_image_folder(root)
        assert torch.equal(cached.images, first.images) and torch.equal(cached.labels, first.labels)
        assert cached.classes == first.classes
    write_images(root, ["c"], 1, seed=3)  # a changed folder gets a new key and is decoded again
    image_cache.clear_memory_cache()
    assert len(load_image_folder(root).images) == 5
    assert len(list(cache_in_tmp.glob("image-folder-*.npz"))) == 2
    assert not list(cache_in_tmp.glob("*.tmp"))


def test_cache_failures_are_ignored(tmp_path: Path, cache_in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "images"
    write_images(root, ["a"], 2)
    load_image_folder(root)
    [cache_file] = cache_in_tmp.glob("image-folder-*.npz")
    cache_file.write_bytes(b"truncated")  # a corrupt cache file is a miss, and gets rewritten
    image_cache.clear_memory_cache()
    assert len(load_image_folder(root).images) == 2
    assert np.load(cache_file)["images"].shape == (2, 3, 32, 32)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(image_cache.CACHE_ENV, str(blocker / "cache"))  # cannot be created
    image_cache.clear_memory_cache()
    assert len(load_image_folder(root).images) == 2


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="No class folders"):
        load_image_folder(tmp_path)
    write_images(tmp_path / "mixed", ["a"], 1, size=(8, 8))
    write_images(tmp_path / "mixed", ["b"], 1, size=(9, 9))
    with pytest.raises(DataError, match="one size"):
        load_image_folder(tmp_path / "mixed")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="x.png"):
        load_image_folder(tmp_path / "bad")


def cifar_eval(image: torch.Tensor) -> torch.Tensor:
    return (image.float() / 255 - 0.5) / 0.5


def test_cifar10_png_folders(tmp_path: Path) -> None:
    write_images(tmp_path / "train", CIFAR_CLASSES, 4)
    write_images(tmp_path / "test", CIFAR_CLASSES, 2, seed=1)
    loaders = load_data("cifar10", tmp_path, batch_size=8, validation_split=0.25, seed=0)
    assert loaders.classes == tuple(CIFAR_CLASSES) and loaders.num_classes == 10
    assert len(loaders.train.sampler) == 30 and len(loaders.valid.sampler) == 10 and len(loaders.test.sampler) == 20
    raw = load_image_folder(tmp_path / "train")
    valid_index = int(loaders.valid.sampler.indices[0])
    first, label = loaders.valid.dataset[valid_index]
    second, _ = loaders.valid.dataset[valid_index]
    assert torch.equal(first, second)  # no augmentation on validation samples
    assert torch.allclose(first, cifar_eval(raw.images[valid_index]), atol=1e-6) and label == int(
        raw.labels[valid_index]
    )
    augmented = [loaders.train.dataset[valid_index][0] for _ in range(10)]
    assert any(not torch.allclose(a, first, atol=1e-6) for a in augmented)  # the same sample, augmented for training
    images, labels = next(iter(loaders.test))
    assert images.shape == (8, 3, 32, 32) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def test_cifar10_folders_need_both_splits_unless_test_only(tmp_path: Path) -> None:
    write_images(tmp_path / "test", CIFAR_CLASSES, 1)
    assert len(load_data("cifar10", tmp_path, test_only=True).test.dataset) == 10
    with pytest.raises(DataError, match="no train/"):
        load_data("cifar10", tmp_path)


def test_cifar10_wrong_class_count(tmp_path: Path) -> None:
    write_images(tmp_path / "train", CIFAR_CLASSES[:3], 1)
    write_images(tmp_path / "test", CIFAR_CLASSES[:3], 1)
    with pytest.raises(DataError, match="3 classes, expected 10"):
        load_data("cifar10", tmp_path)


def write_cifar_batches(folder: Path) -> np.ndarray:
    """torchvision's python-batch layout with 2 tiny images per file; returns the test images (N, 32, 32, 3)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_images = None
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (2, 3 * 32 * 32), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": data, "labels": [1, 7]}, handle)
        if name == "test_batch":
            test_images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": CIFAR_CLASSES}, handle)
    return test_images


def test_cifar10_python_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10, cifar

    test_images = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)  # our tiny files lack the real md5s
    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):
        loaders = load_data("cifar10", root, validation_split=0.1, batch_size=4)
        assert len(loaders.train_eval_set) == 10 and len(loaders.test.dataset) == 2
        image, label = loaders.test.dataset[1]
        assert label == 7 and torch.allclose(
            image, cifar_eval(torch.from_numpy(test_images[1]).permute(2, 0, 1)), atol=1e-6
        )


def test_download_failure_is_a_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR10, MNIST

    def offline(self) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(CIFAR10, "download", offline)
    monkeypatch.setattr(MNIST, "download", offline)
    with pytest.raises(DataError, match="cifar-10-batches-py.*network unreachable"):
        load_data("cifar10", tmp_path)
    with pytest.raises(DataError, match=r"MNIST/raw/.*network unreachable"):
        load_data("mnist", tmp_path)
    with pytest.raises(DataError, match=r"FashionMNIST/raw/.*network unreachable"):
        load_data("fashionmnist", tmp_path)


def test_imagenet_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no train/ sub-folder"):
        load_data("imagenet", tmp_path)
    write_images(tmp_path / "train", ["n01", "n02"], 3, size=(20, 30))
    write_images(tmp_path / "val", ["n01", "n02"], 2, size=(30, 20), seed=1)
    loaders = load_data("imagenet", tmp_path, batch_size=4, input_shape=(3, 16, 16), validation_split=0.5)
    assert loaders.num_classes == 2 and loaders.classes == ("n01", "n02")  # class count from the folders
    images, labels = next(iter(loaders.train))
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    images, labels = next(iter(loaders.test))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]
