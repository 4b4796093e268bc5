"""A wider CNN for the 8x8 digits: the model of ``make demo`` (``distiller pipeline``).

:class:`~distiller.models.digits.simplenet_digits.SimplenetDigits` is so small that, at a batch of
256, ONNX Runtime spends its time in per-operator overhead and layout changes, and int8 kernels
cannot beat float ones. This network has enough work per layer (5.3M MACs per image, 216K
parameters) for the compression pipeline to show real speed-ups (int8 runs 2-3 times faster than
float in ONNX Runtime even after half of its filters are pruned), and still trains to about 99% test
accuracy at well under a second per epoch on one CPU core. Three conv-BN-ReLU stages (48, 96 and 192
filters at 8x8, 8x8 and 4x4) are plain filter chains without residual connections, so structured
pruning of any stage thins.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["ConvnetDigits"]


class ConvnetDigits(nn.Module):
    """conv3x3(1->w)-BN-ReLU, conv3x3(w->2w)-BN-ReLU, max-pool, conv3x3(2w->4w)-BN-ReLU, max-pool, fc(4w*2*2)."""

    def __init__(self, num_classes: int = 10, width: int = 48) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, 2 * width, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.relu3 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc = nn.Linear(4 * width * 2 * 2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.pool1(self.relu2(self.bn2(self.conv2(x))))
        x = self.pool2(self.relu3(self.bn3(self.conv3(x))))
        return self.fc(torch.flatten(x, 1))


@builtin_model("convnet_digits", "digits")
def convnet_digits(num_classes: int = 10) -> ConvnetDigits:
    """The demo's 8x8-digits CNN (216K parameters, 5.3M MACs per image)."""
    return ConvnetDigits(num_classes)
