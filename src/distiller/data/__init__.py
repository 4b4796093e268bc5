"""Datasets and data loaders.

``load_data(name, data_dir, ...)`` returns :class:`DataLoaders` (train, validation, test) for any
dataset in :data:`DATASETS`. Built-in: ``cifar10``, ``mnist``, ``fashionmnist``, ``imagenet``,
``digits`` (embedded, needs no folder) and ``fake`` (synthetic). Register your own with
:func:`register_dataset`; it then gets the validation split, effective sizes and resumable
sampling of the built-ins.
"""

from distiller.data.cifar import CIFAR10_SPEC
from distiller.data.digits import DIGITS_SPEC
from distiller.data.fake import FAKE_SPEC
from distiller.data.image_cache import ImageArrays, cache_dir, load_image_folder
from distiller.data.imagenet import IMAGENET_SPEC
from distiller.data.loaders import DataLoaders, LoaderOptions, load_data, seed_worker
from distiller.data.mnist import FASHION_MNIST_SPEC, MNIST_SPEC
from distiller.data.samplers import (
    DistributedEpochSampler,
    EpochSubsetSampler,
    FixedSubsetSampler,
    derive_seed,
    split_indices,
)
from distiller.data.sizes import check_size, resolve_size
from distiller.data.specs import DATASETS, DatasetRequest, DatasetSpec, TransformKind, register_dataset
from distiller.data.tensor_dataset import TensorImageDataset

for _spec in (CIFAR10_SPEC, MNIST_SPEC, FASHION_MNIST_SPEC, IMAGENET_SPEC, DIGITS_SPEC, FAKE_SPEC):
    DATASETS.register(_spec.name, _spec)
del _spec

__all__ = [
    "DATASETS",
    "DataLoaders",
    "DatasetRequest",
    "DatasetSpec",
    "DistributedEpochSampler",
    "EpochSubsetSampler",
    "FixedSubsetSampler",
    "ImageArrays",
    "LoaderOptions",
    "TensorImageDataset",
    "TransformKind",
    "cache_dir",
    "check_size",
    "derive_seed",
    "load_data",
    "load_image_folder",
    "register_dataset",
    "resolve_size",
    "seed_worker",
    "split_indices",
]
