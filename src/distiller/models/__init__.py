"""The model zoo: Distiller's CIFAR-10 / MNIST / ImageNet architectures and every torchvision classifier.

Build models by name with :func:`create_model`; list them with :func:`list_models`; add your own
with :func:`register_model`. Distiller's architectures keep the original's parameter and module
names, so original checkpoints, schedules and statistics files refer to the same things here.
torchvision classifiers are registered as ``torchvision.NAME``, and also as ``NAME`` where Distiller
has no model of that name (``resnet18`` is Distiller's variant, ``torchvision.resnet18`` is
torchvision's).
"""

from distiller.models import cifar10 as cifar10
from distiller.models.create import create_model
from distiller.models.zoo import (
    DATASET_INFO,
    MODELS,
    ModelEntry,
    dataset_for_arch,
    list_models,
    register_model,
)

__all__ = [
    "DATASET_INFO",
    "MODELS",
    "ModelEntry",
    "create_model",
    "dataset_for_arch",
    "list_models",
    "register_model",
]
