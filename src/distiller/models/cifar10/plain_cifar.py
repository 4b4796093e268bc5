"""Plain-20 for CIFAR-10: ResNet-20's layout without shortcuts (used by the AMC and DropFilter examples)."""

from __future__ import annotations

import torch
from torch import nn

from distiller.models._common import conv3x3, he_init
from distiller.models.zoo import builtin_model

__all__ = ["PlainBlock", "PlainCifar"]


class PlainBlock(nn.Module):
    """conv-(BN)-ReLU-conv-(BN)-ReLU with no shortcut; ``bn1``/``bn2`` are None without batch norm."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes) if batch_norm else None
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes) if batch_norm else None
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.bn1 is not None:
            out = self.bn1(out)
        out = self.conv2(self.relu1(out))
        if self.bn2 is not None:
            out = self.bn2(out)
        return self.relu2(out)


class PlainCifar(nn.Module):
    """Three stages of :class:`PlainBlock` (16, 32, 64 channels), 8x8 average pool, one Linear."""

    def __init__(self, blocks_per_layer: list[int], num_classes: int = 10, batch_norm: bool = True) -> None:
        super().__init__()
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes) if batch_norm else None
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(16, blocks_per_layer[0], 1, batch_norm)
        self.layer2 = self._make_layer(32, blocks_per_layer[1], 2, batch_norm)
        self.layer3 = self._make_layer(64, blocks_per_layer[2], 2, batch_norm)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64 * PlainBlock.expansion, num_classes)
        he_init(self)

    def _make_layer(self, planes: int, num_blocks: int, stride: int, batch_norm: bool) -> nn.Sequential:
        blocks = [PlainBlock(self.inplanes, planes, stride, batch_norm)]
        self.inplanes = planes * PlainBlock.expansion
        blocks += [PlainBlock(self.inplanes, planes, 1, batch_norm) for _ in range(num_blocks - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        if self.bn1 is not None:
            x = self.bn1(x)
        x = self.relu(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


@builtin_model("plain20_cifar", "cifar10")
def plain20_cifar(num_classes: int = 10) -> PlainCifar:
    """Plain-20 with batch normalization."""
    return PlainCifar([3, 3, 3], num_classes)


@builtin_model("plain20_cifar_nobn", "cifar10")
def plain20_cifar_nobn(num_classes: int = 10) -> PlainCifar:
    """Plain-20 without batch normalization (the convolutions still have no bias, as in the original)."""
    return PlainCifar([3, 3, 3], num_classes, batch_norm=False)
