"""Distiller's ImageNet ResNet / ResNeXt / Wide-ResNet: torchvision's architecture, hook-friendly modules.

torchvision's blocks reuse one ReLU module three times and add the shortcut with ``+=``, so
per-module hooks (activation statistics, quantization wrappers) cannot tell the activations apart
and never see the addition. Here every block has its own ``relu1``/``relu2``(/``relu3``) and an
``add`` module (:class:`~distiller.modules.EltwiseAdd`), as in the original Distiller. Parameter
names are torchvision's, so torchvision's pretrained state dicts load unchanged (ReLU and add
modules have no parameters).
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models._common import conv1x1, conv3x3, he_init, projection_shortcut
from distiller.models.zoo import builtin_model
from distiller.modules import EltwiseAdd

__all__ = ["DistillerBasicBlock", "DistillerBottleneck", "ResNet"]


class DistillerBasicBlock(nn.Module):
    """conv3x3-BN-relu1-conv3x3-BN, add shortcut, relu2 (modules listed in execution order)."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("DistillerBasicBlock only supports groups=1 and base_width=64")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.add = EltwiseAdd(inplace=True)
        self.relu2 = nn.ReLU(inplace=True)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu2(self.add(out, identity))


class DistillerBottleneck(nn.Module):
    """1x1-BN-relu1-3x3(groups)-BN-relu2-1x1-BN, add shortcut, relu3; stride on the 3x3 (ResNet v1.5)."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.add = EltwiseAdd(inplace=True)
        self.relu3 = nn.ReLU(inplace=True)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu3(self.add(out, identity))


Block = type[DistillerBasicBlock] | type[DistillerBottleneck]


class ResNet(nn.Module):
    """torchvision's ResNet layout (7x7 stem, max-pool, four stages, global average pool, fc).

    Args:
        block: :class:`DistillerBasicBlock` or :class:`DistillerBottleneck`.
        layers: blocks per stage.
        num_classes: outputs of ``fc``.
        groups, width_per_group: ResNeXt cardinality and width (Wide-ResNet doubles the width).
        zero_init_residual: start each block's last BN at zero, so blocks begin as identities.
    """

    def __init__(
        self,
        block: Block,
        layers: list[int],
        num_classes: int = 1000,
        groups: int = 1,
        width_per_group: int = 64,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        he_init(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, DistillerBottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, DistillerBasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = projection_shortcut(self.inplanes, outplanes, stride)
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width)]
        self.inplanes = outplanes
        layers += [
            block(self.inplanes, planes, groups=self.groups, base_width=self.base_width) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _register(name: str, block: Block, layers: list[int], groups: int = 1, width_per_group: int = 64):
    """Register a variant that loads torchvision's weights of the same name."""

    @builtin_model(name, "imagenet", pretrained_name=name)
    def build(num_classes: int = 1000) -> ResNet:
        return ResNet(block, layers, num_classes, groups=groups, width_per_group=width_per_group)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"Distiller's {name}: torchvision-compatible parameters, distinct ReLU and add modules."
    return build


resnet18 = _register("resnet18", DistillerBasicBlock, [2, 2, 2, 2])
resnet34 = _register("resnet34", DistillerBasicBlock, [3, 4, 6, 3])
resnet50 = _register("resnet50", DistillerBottleneck, [3, 4, 6, 3])
resnet101 = _register("resnet101", DistillerBottleneck, [3, 4, 23, 3])
resnet152 = _register("resnet152", DistillerBottleneck, [3, 8, 36, 3])
resnext50_32x4d = _register("resnext50_32x4d", DistillerBottleneck, [3, 4, 6, 3], groups=32, width_per_group=4)
resnext101_32x8d = _register("resnext101_32x8d", DistillerBottleneck, [3, 4, 23, 3], groups=32, width_per_group=8)
wide_resnet50_2 = _register("wide_resnet50_2", DistillerBottleneck, [3, 4, 6, 3], width_per_group=128)
wide_resnet101_2 = _register("wide_resnet101_2", DistillerBottleneck, [3, 4, 23, 3], width_per_group=128)
