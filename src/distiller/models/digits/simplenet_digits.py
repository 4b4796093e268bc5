"""A tiny CNN for scikit-learn's 8x8 handwritten digits: the demo and test workhorse.

It trains to >= 97% test accuracy in seconds on a CPU, so examples and integration tests can run a
whole prune / fine-tune / thin cycle quickly. Module names (``conv1``, ``bn1``, ``relu1``, ...,
``fc``) follow the original's naming so pruning schedules read like the ones for ResNets.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["SimplenetDigits"]


class SimplenetDigits(nn.Module):
    """conv3x3(1->16)-BN-ReLU, conv3x3(16->32)-BN-ReLU, 2x2 max-pool, fc(32*4*4 -> classes)."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(2 * width * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool(self.relu2(self.bn2(self.conv2(x))))
        return self.fc(torch.flatten(x, 1))


@builtin_model("simplenet_digits", "digits")
def simplenet_digits(num_classes: int = 10) -> SimplenetDigits:
    """The 8x8-digits CNN (about 13K parameters)."""
    return SimplenetDigits(num_classes)
