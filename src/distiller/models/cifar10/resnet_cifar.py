"""ResNet for CIFAR-10 (He et al. 2016, "Deep Residual Learning for Image Recognition"), with layer gates.

Parameter and module names are those of the original Distiller's ``resnet_cifar.py``, so its
checkpoints (``module.layer1.0.conv1.weight`` ...) load after stripping ``module.``. Shortcuts that
change width or resolution are 1x1 conv + BN ("option B"), as in those checkpoints.

Layer gates are what SSL "layer removal" (``thinning.resnet_cifar_remove_layers``) switches off: a
block whose conv gate is False skips that convolution (and its BN/ReLU), so a model fine-tuned with
removed layers must be evaluated with the same gates.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models._common import conv3x3, he_init, make_layer_gates, projection_shortcut
from distiller.models.zoo import builtin_model
from distiller.modules import EltwiseAdd

__all__ = ["BasicBlock", "ResNetCifar"]

BLOCKS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}


class BasicBlock(nn.Module):
    """conv-BN-ReLU-conv-BN + shortcut, then ReLU; ``block_gates[i]`` False bypasses conv i+1.

    With both gates off the block computes ``relu2(x + shortcut(x))``. ReLUs are not in-place so
    that a bypassed path never overwrites the tensor the shortcut still needs.
    """

    expansion = 1

    def __init__(
        self,
        block_gates: list[bool],
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.block_gates = block_gates
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.stride = stride
        self.residual_eltwiseadd = EltwiseAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.block_gates[0]:
            out = self.relu1(self.bn1(self.conv1(out)))
        if self.block_gates[1]:
            out = self.bn2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        out = self.residual_eltwiseadd(residual, out)
        return self.relu2(out)


class ResNetCifar(nn.Module):
    """Three stages of ``BasicBlock`` (16, 32, 64 channels), global 8x8 average pool, one Linear.

    Attributes:
        layer_gates: ``layer_gates[stage][block] == [gate_conv1, gate_conv2]``, shared with the blocks.
    """

    def __init__(self, block: type[BasicBlock], layers: list[int], num_classes: int = 10) -> None:
        super().__init__()
        self.layer_gates = make_layer_gates(layers)
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(self.layer_gates[0], block, 16, layers[0])
        self.layer2 = self._make_layer(self.layer_gates[1], block, 32, layers[1], stride=2)
        self.layer3 = self._make_layer(self.layer_gates[2], block, 64, layers[2], stride=2)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        he_init(self)

    def _make_layer(
        self, gates: list[list[bool]], block: type[BasicBlock], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = projection_shortcut(self.inplanes, outplanes, stride)
        layers = [block(gates[0], self.inplanes, planes, stride, downsample)]
        self.inplanes = outplanes
        layers += [block(gates[i], self.inplanes, planes) for i in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


def _resnet_cifar(depth: int, num_classes: int) -> ResNetCifar:
    return ResNetCifar(BasicBlock, [BLOCKS[depth]] * 3, num_classes=num_classes)


@builtin_model("resnet20_cifar", "cifar10")
def resnet20_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-20 (3 blocks per stage, 0.27M parameters): the workhorse of the original's examples."""
    return _resnet_cifar(20, num_classes)


@builtin_model("resnet32_cifar", "cifar10")
def resnet32_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-32 (5 blocks per stage)."""
    return _resnet_cifar(32, num_classes)


@builtin_model("resnet44_cifar", "cifar10")
def resnet44_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-44 (7 blocks per stage)."""
    return _resnet_cifar(44, num_classes)


@builtin_model("resnet56_cifar", "cifar10")
def resnet56_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-56 (9 blocks per stage)."""
    return _resnet_cifar(56, num_classes)


@builtin_model("resnet110_cifar", "cifar10")
def resnet110_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-110 (18 blocks per stage)."""
    return _resnet_cifar(110, num_classes)


@builtin_model("resnet1202_cifar", "cifar10")
def resnet1202_cifar(num_classes: int = 10) -> ResNetCifar:
    """ResNet-1202 (200 blocks per stage, 19.4M parameters)."""
    return _resnet_cifar(1202, num_classes)
