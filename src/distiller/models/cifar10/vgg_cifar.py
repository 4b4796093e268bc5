"""VGG for CIFAR-10 (Simonyan & Zisserman 2014) with a single Linear(512, classes) classifier.

Convolutions are ``features.N`` with their index in one Sequential, exactly like the original (and
torchvision), so schedules naming ``features.0.weight`` keep working.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["CFGS", "VGGCifar", "make_vgg_features"]

CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def make_vgg_features(cfg: list[int | str], batch_norm: bool = False, in_channels: int = 3) -> nn.Sequential:
    """VGG's feature extractor: 3x3 convs (with bias) [+ BN] + ReLU, and 2x2 max-pools at each "M"."""
    layers: list[nn.Module] = []
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(v)
    return nn.Sequential(*layers)


class VGGCifar(nn.Module):
    """VGG features (5 pools: 32x32 -> 1x1) and one Linear layer."""

    def __init__(self, features: nn.Sequential, num_classes: int = 10) -> None:
        super().__init__()
        self.features = features
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def _vgg(cfg: str, batch_norm: bool, num_classes: int) -> VGGCifar:
    return VGGCifar(make_vgg_features(CFGS[cfg], batch_norm), num_classes)


@builtin_model("vgg11_cifar", "cifar10")
def vgg11_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-11 (configuration A)."""
    return _vgg("A", False, num_classes)


@builtin_model("vgg11_bn_cifar", "cifar10")
def vgg11_bn_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-11 (configuration A) with batch normalization."""
    return _vgg("A", True, num_classes)


@builtin_model("vgg13_cifar", "cifar10")
def vgg13_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-13 (configuration B)."""
    return _vgg("B", False, num_classes)


@builtin_model("vgg13_bn_cifar", "cifar10")
def vgg13_bn_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-13 (configuration B) with batch normalization."""
    return _vgg("B", True, num_classes)


@builtin_model("vgg16_cifar", "cifar10")
def vgg16_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-16 (configuration D)."""
    return _vgg("D", False, num_classes)


@builtin_model("vgg16_bn_cifar", "cifar10")
def vgg16_bn_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-16 (configuration D) with batch normalization."""
    return _vgg("D", True, num_classes)


@builtin_model("vgg19_cifar", "cifar10")
def vgg19_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-19 (configuration E)."""
    return _vgg("E", False, num_classes)


@builtin_model("vgg19_bn_cifar", "cifar10")
def vgg19_bn_cifar(num_classes: int = 10) -> VGGCifar:
    """VGG-19 (configuration E) with batch normalization."""
    return _vgg("E", True, num_classes)
