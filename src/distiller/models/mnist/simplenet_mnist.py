"""Small MNIST networks of the original (after PyTorch's MNIST example), with every ReLU and pool a module."""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["Simplenet", "SimplenetV2"]


class _ConvStem(nn.Module):
    """conv5x5(1->20)-ReLU-pool, conv5x5(20->50)-ReLU-pool: 28x28 -> 50x4x4, shared by both versions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5, 1)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5, 1)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2, 2)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        return self.pool2(self.relu2(self.conv2(x)))


class Simplenet(_ConvStem):
    """Two convs, fc 800->500, fc 500->classes (431K parameters; returns logits)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4 * 4 * 50, 500)
        self.relu3 = nn.ReLU(inplace=False)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        return self.fc2(self.relu3(self.fc1(x)))


class SimplenetV2(_ConvStem):
    """Two convs, 4x4 average pool, fc 50->classes (26K parameters; 98.97% top-1 in the original)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.avgpool = nn.AvgPool2d(4, stride=1)
        self.fc = nn.Linear(50, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


@builtin_model("simplenet_mnist", "mnist")
def simplenet_mnist(num_classes: int = 10) -> Simplenet:
    """The original's ``simplenet_mnist``."""
    return Simplenet(num_classes)


@builtin_model("simplenet_v2_mnist", "mnist")
def simplenet_v2_mnist(num_classes: int = 10) -> SimplenetV2:
    """The original's ``simplenet_v2_mnist``."""
    return SimplenetV2(num_classes)
