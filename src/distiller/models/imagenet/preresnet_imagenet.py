"""Pre-activation ResNet for ImageNet (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Names follow the original ``preresnet_imagenet.py``: blocks have ``pre_bn``/``pre_relu`` (absent on
the very first block, whose input was just normalized by the stem), ``conv1``, ``bn1_2``,
``relu1_2``, ``conv2`` [, ``bn2_3``, ``relu2_3``, ``conv3``] and a ``downsample`` 1x1 conv applied to
the pre-activation. The classifier pools with ``AvgPool2d(7)``, so inputs must be 224x224.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models._common import conv1x1, conv3x3, he_init
from distiller.models.zoo import builtin_model

__all__ = ["PreactBasicBlock", "PreactBottleneck", "PreactResNet"]


class _PreactBlock(nn.Module):
    """Shared pre-activation and shortcut logic; subclasses add the convolutions and ``residual_branch``."""

    expansion = 1

    def __init__(self, inplanes: int, preactivate: bool) -> None:
        super().__init__()
        self.pre_bn = nn.BatchNorm2d(inplanes) if preactivate else None
        self.pre_relu = nn.ReLU(inplace=True) if preactivate else None
        self.preactivate = preactivate

    def residual_branch(self, preact: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        preact = self.pre_relu(self.pre_bn(x)) if self.preactivate else x
        out = self.residual_branch(preact)
        residual = self.downsample(preact) if self.downsample is not None else x
        return out + residual


class PreactBasicBlock(_PreactBlock):
    """[BN-ReLU-] conv3x3 - BN-ReLU - conv3x3, plus shortcut."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preactivate: bool = True,
    ) -> None:
        super().__init__(inplanes, preactivate)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1_2 = nn.BatchNorm2d(planes)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride

    def residual_branch(self, preact: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.relu1_2(self.bn1_2(self.conv1(preact))))


class PreactBottleneck(_PreactBlock):
    """[BN-ReLU-] conv1x1 - BN-ReLU - conv3x3 - BN-ReLU - conv1x1 (x4 width), plus shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preactivate: bool = True,
    ) -> None:
        super().__init__(inplanes, preactivate)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1_2 = nn.BatchNorm2d(planes)
        self.relu1_2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2_3 = nn.BatchNorm2d(planes)
        self.relu2_3 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.downsample = downsample
        self.stride = stride

    def residual_branch(self, preact: torch.Tensor) -> torch.Tensor:
        out = self.relu1_2(self.bn1_2(self.conv1(preact)))
        out = self.relu2_3(self.bn2_3(self.conv2(out)))
        return self.conv3(out)


class PreactResNet(nn.Module):
    """Stem (conv7x7-BN-ReLU-maxpool), four pre-activation stages, final BN-ReLU, 7x7 average pool, fc."""

    def __init__(self, block: type[_PreactBlock], layers: list[int], num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.final_bn = nn.BatchNorm2d(512 * block.expansion)
        self.final_relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        he_init(self)

    def _make_layer(self, block: type[_PreactBlock], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = nn.Sequential(conv1x1(self.inplanes, outplanes, stride))
        # The first block of layer1 follows the stem's BN-ReLU, so it does not pre-activate again.
        layers = [block(self.inplanes, planes, stride, downsample, preactivate=stride != 1)]
        self.inplanes = outplanes
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu1(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(self.final_relu(self.final_bn(x)))
        return self.fc(torch.flatten(x, 1))


@builtin_model("preact_resnet18", "imagenet")
def preact_resnet18(num_classes: int = 1000) -> PreactResNet:
    """Pre-activation ResNet-18."""
    return PreactResNet(PreactBasicBlock, [2, 2, 2, 2], num_classes)


@builtin_model("preact_resnet34", "imagenet")
def preact_resnet34(num_classes: int = 1000) -> PreactResNet:
    """Pre-activation ResNet-34."""
    return PreactResNet(PreactBasicBlock, [3, 4, 6, 3], num_classes)


@builtin_model("preact_resnet50", "imagenet")
def preact_resnet50(num_classes: int = 1000) -> PreactResNet:
    """Pre-activation ResNet-50."""
    return PreactResNet(PreactBottleneck, [3, 4, 6, 3], num_classes)


@builtin_model("preact_resnet101", "imagenet")
def preact_resnet101(num_classes: int = 1000) -> PreactResNet:
    """Pre-activation ResNet-101."""
    return PreactResNet(PreactBottleneck, [3, 4, 23, 3], num_classes)


@builtin_model("preact_resnet152", "imagenet")
def preact_resnet152(num_classes: int = 1000) -> PreactResNet:
    """Pre-activation ResNet-152."""
    return PreactResNet(PreactBottleneck, [3, 8, 36, 3], num_classes)
