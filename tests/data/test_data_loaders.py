"""load_data: validation split, effective sizes, resumable epochs, built-in synthetic datasets."""

from __future__ import annotations

import hashlib
from importlib import resources

import numpy as np
import pytest
import torch
from torch import nn

from distiller.data import (
    DATASETS,
    DatasetRequest,
    DatasetSpec,
    TensorImageDataset,
    load_data,
    register_dataset,
)
from distiller.errors import ConfigError, DataError

TOY_SIZE = 200
TRAIN_MARK = 1000.0  # the toy train transform adds this, so augmented samples are recognisable


def build_toy(request: DatasetRequest):
    """Sample i of the train split is the value i (plus TRAIN_MARK with train transforms)."""
    transform = (lambda x: x + TRAIN_MARK) if request.transform == "train" else None
    train_images = torch.arange(TOY_SIZE, dtype=torch.float32).view(-1, 1, 1, 1)
    test_images = -1.0 - torch.arange(50, dtype=torch.float32).view(-1, 1, 1, 1)
    train = TensorImageDataset(train_images, torch.arange(TOY_SIZE) % 4, transform)
    test = TensorImageDataset(test_images, torch.arange(50) % 4, None)
    return train, test


TOY = DatasetSpec("toy", (1, 1, 1), 4, needs_dir=False, builder=build_toy)


def values(loader) -> list[int]:
    """The toy sample values a loader yields, in order."""
    return [int(v) for x, _ in loader for v in x.flatten().tolist()]


def test_validation_is_a_fixed_slice_of_train_with_eval_transforms() -> None:
    loaders = load_data(TOY, batch_size=16, validation_split=0.1, seed=3)
    valid = values(loaders.valid)
    assert len(valid) == 20 and valid == sorted(valid)
    assert all(0 <= v < TOY_SIZE for v in valid)  # no TRAIN_MARK: evaluation transforms
    assert values(loaders.valid) == valid
    train = [v - int(TRAIN_MARK) for v in values(loaders.train)]
    assert all(0 <= v < TOY_SIZE for v in train)  # training samples are augmented
    assert len(train) == 180 and not set(train) & set(valid)
    assert set(train) | set(valid) == set(range(TOY_SIZE))
    assert values(load_data(TOY, batch_size=16, validation_split=0.1, seed=3).valid) == valid
    assert values(load_data(TOY, batch_size=16, validation_split=0.1, seed=4).valid) != valid


def test_zero_validation_split_validates_on_test() -> None:
    loaders = load_data(TOY, validation_split=0)
    assert loaders.valid is loaders.test
    assert len(values(loaders.train)) == TOY_SIZE


def test_effective_sizes_fraction_and_count() -> None:
    loaders = load_data(
        TOY, validation_split=0.1, effective_train_size=0.5, effective_valid_size=5, effective_test_size=0.2
    )
    assert len(loaders.train.sampler) == 90 and len(values(loaders.train)) == 90
    assert len(values(loaders.valid)) == 5
    assert len(values(loaders.test)) == 10
    loaders = load_data(TOY, validation_split=0.1, effective_train_size=37, effective_test_size=1.0)
    assert len(values(loaders.train)) == 37 and len(values(loaders.test)) == 50


def test_train_subset_redrawn_per_epoch_and_replayed_after_resume() -> None:
    def run(epochs, **kw) -> list[list[int]]:
        loaders = load_data(TOY, batch_size=8, effective_train_size=0.25, seed=11, **kw)
        seen = []
        for epoch in epochs:
            loaders.set_epoch(epoch)
            seen.append(values(loaders.train))
        return seen

    uninterrupted = run(range(4))
    assert len({tuple(sorted(epoch)) for epoch in uninterrupted}) == 4  # a new subset every epoch
    assert run([2, 3]) == uninterrupted[2:]  # resumed at epoch 2 in a fresh process
    assert run([2, 3], deterministic=True) == uninterrupted[2:]
    other_seed = load_data(TOY, batch_size=8, effective_train_size=0.25, seed=12)
    assert values(other_seed.train) != uninterrupted[0]


def test_valid_and_test_subsets_are_fixed_and_sequential() -> None:
    loaders = load_data(TOY, effective_valid_size=0.5, effective_test_size=0.5, seed=1)
    valid, test = values(loaders.valid), values(loaders.test)
    loaders.set_epoch(5)
    assert values(loaders.valid) == valid and values(loaders.test) == test
    assert valid == sorted(valid) and test == sorted(test, reverse=True)  # toy test values decrease


def test_test_only_builds_only_the_test_loader() -> None:
    loaders = load_data(TOY, test_only=True)
    assert loaders.train is None and loaders.valid is None and loaders.train_eval_set is None
    assert len(values(loaders.test)) == 50
    loaders.set_epoch(3)
    with pytest.raises(ConfigError, match="test_only"):
        loaders.calibration_loader(10)


def test_calibration_reads_fixed_train_subset_with_eval_transforms() -> None:
    loaders = load_data(TOY, validation_split=0.1, seed=2)
    calibration = values(loaders.calibration_loader(30))
    valid = values(loaders.valid)
    assert len(calibration) == 30 and calibration == sorted(calibration)
    assert all(0 <= v < TOY_SIZE for v in calibration)  # evaluation transforms
    assert not set(calibration) & set(valid)  # never the validation (or test) samples
    assert values(loaders.calibration_loader(30)) == calibration
    assert len(values(loaders.calibration_loader(0.5))) == 90


def test_workers_with_deterministic_seeding() -> None:
    """Augmentations drawn in worker processes are reproducible per epoch when deterministic."""
    kw = {"batch_size": 64, "workers": 2, "deterministic": True, "seed": 0}
    first, second = load_data("fake", **kw), load_data("fake", **kw)
    first.set_epoch(1)
    second.set_epoch(1)
    batch_a, labels_a = next(iter(first.train))
    batch_b, labels_b = next(iter(second.train))
    assert torch.equal(labels_a, labels_b) and torch.equal(batch_a, batch_b)


def test_digits_embedded_file_is_the_pinned_one() -> None:
    """digits.npz holds scikit-learn's digits and a split that must never change (module docstring)."""
    with resources.files("distiller.data").joinpath("digits.npz").open("rb") as handle, np.load(handle) as data:
        assert data["images"].shape == (1797, 8, 8) and data["images"].dtype == np.uint8
        assert int(data["images"].max()) == 16
        assert _sha256(data["images"]) == "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3"
        assert _sha256(data["labels"]) == "a3c91c262eddcf7ba8f0e37507c30284493c9b20412ffe4af30d536401f7ba21"
        assert _sha256(data["is_test"]) == "1933e528ad3e81288786baf1c047be63c5c150508a805b214e939adf5e51b827"


def _sha256(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def test_digits_splits() -> None:
    loaders = load_data("digits", "/no/such/folder/ignored", batch_size=500, validation_split=0.1)
    train, test = loaders.train_eval_set, loaders.test.dataset
    assert loaders.input_shape == (1, 8, 8) and loaders.num_classes == 10
    assert len(train) + len(test) == 1797 and len(test) == 360
    assert torch.bincount(test.labels).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]  # stratified
    assert len(loaders.train.sampler) == 1294 and len(loaders.valid.sampler) == 143
    images, _ = next(iter(loaders.test))
    assert images.shape == (360, 1, 8, 8) and images.dtype == torch.float32
    train_images = train.images.flatten(1)
    assert abs(float(train_images.mean())) < 1e-4 and abs(float(train_images.std()) - 1) < 1e-3
    again = load_data("digits", batch_size=500, test_only=True).test.dataset
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)


def test_digits_demo_reaches_95_percent_quickly() -> None:
    torch.manual_seed(0)
    loaders = load_data("digits", batch_size=32, seed=0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(4):
        loaders.set_epoch(epoch)
        for images, labels in loaders.train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
    with torch.no_grad():
        correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loaders.test)
    assert correct / 360 >= 0.95


def test_fake_is_deterministic_and_configurable() -> None:
    loaders = load_data("fake", batch_size=64, input_shape=(1, 5, 7), num_classes=3)
    assert loaders.input_shape == (1, 5, 7) and loaders.num_classes == 3
    assert len(loaders.train_eval_set) == 256 and len(loaders.test.dataset) == 64
    images, labels = next(iter(loaders.test))
    assert images.shape == (64, 1, 5, 7) and int(labels.max()) < 3
    again, _ = next(iter(load_data("fake", batch_size=64, input_shape=(1, 5, 7), num_classes=3).test))
    assert torch.equal(images, again)
    default = load_data("fake", test_only=True)
    assert default.input_shape == (3, 32, 32) and default.num_classes == 10


def test_registered_dataset_is_found_by_name() -> None:
    register_dataset("_toy_for_tests", input_shape=(1, 1, 1), num_classes=4, needs_dir=False, replace=True)(build_toy)
    assert "_toy_for_tests" in DATASETS.names()
    loaders = load_data("_toy_for_tests", validation_split=0.1)
    assert loaders.dataset == "_toy_for_tests" and len(values(loaders.valid)) == 20


def test_builtin_names() -> None:
    assert {"cifar10", "mnist", "fashionmnist", "imagenet", "digits", "fake"} <= set(DATASETS.names())


def test_unknown_dataset_suggests_names() -> None:
    with pytest.raises(ConfigError, match="cifar10"):
        load_data("cifar")


@pytest.mark.parametrize("name", ["cifar10", "mnist", "fashionmnist", "imagenet"])
def test_missing_data_dir(name: str, tmp_path) -> None:
    with pytest.raises(DataError, match=f"'{name}' needs DATASET_DIR"):
        load_data(name)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match="does not exist") as info:
        load_data(name, missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"validation_split": 1.0},
        {"validation_split": -0.1},
        {"effective_train_size": 0},
        {"effective_valid_size": 2.5},
        {"effective_test_size": -3},
        {"batch_size": 0},
        {"workers": -1},
        {"input_shape": (3, 64, 64)},
        {"num_classes": 100},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        load_data("digits", **kwargs)


def test_inconsistent_builder_is_reported() -> None:
    def lopsided(request: DatasetRequest):
        size = 10 if request.transform == "train" else 12
        data = TensorImageDataset(torch.zeros(size, 1, 1, 1), torch.zeros(size, dtype=torch.long))
        return data, data

    with pytest.raises(DataError, match="index both alike"):
        load_data(DatasetSpec("lopsided", (1, 1, 1), 1, needs_dir=False, builder=lopsided))
