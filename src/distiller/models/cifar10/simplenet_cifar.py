"""A LeNet-like network for CIFAR-10: the original's smallest CIFAR model, handy for quick experiments."""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["SimplenetCifar"]


class SimplenetCifar(nn.Module):
    """conv5x5(3->6)+pool, conv5x5(6->16)+pool, fc 400->120->84->classes; every ReLU is its own module."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.relu_conv1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu_conv2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu_fc1 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu_fc2 = nn.ReLU()
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu_conv1(self.conv1(x)))
        x = self.pool2(self.relu_conv2(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.relu_fc1(self.fc1(x))
        x = self.relu_fc2(self.fc2(x))
        return self.fc3(x)


@builtin_model("simplenet_cifar", "cifar10")
def simplenet_cifar(num_classes: int = 10) -> SimplenetCifar:
    """The original's ``simplenet_cifar`` (62K parameters)."""
    return SimplenetCifar(num_classes)
