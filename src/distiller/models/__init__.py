"""The model zoo: Distiller's CIFAR-10 / MNIST / ImageNet architectures and every torchvision classifier.

Build models by name with :func:`create_model`; list them with :func:`list_models`; add your own
with :func:`register_model`. Distiller's architectures keep the original's parameter and module
names, so original checkpoints, schedules and statistics files refer to the same things here.
torchvision classifiers are registered as ``torchvision.NAME``, and also as ``NAME`` where Distiller
has no model of that name (``resnet18`` is Distiller's variant, ``torchvision.resnet18`` is
torchvision's).
"""

# Distiller's families register themselves on import; torchvision's go last so that a Distiller
# model keeps the plain name when both define it.
from distiller.models import cifar10, digits, imagenet, mnist
from distiller.models.create import create_model
from distiller.models.torchvision_models import register_torchvision_models
from distiller.models.zoo import (
    DATASET_INFO,
    MODELS,
    ModelEntry,
    dataset_for_arch,
    list_models,
    register_model,
)

register_torchvision_models()

__all__ = [
    "DATASET_INFO",
    "MODELS",
    "ModelEntry",
    "cifar10",
    "create_model",
    "dataset_for_arch",
    "digits",
    "imagenet",
    "list_models",
    "mnist",
    "register_model",
]
