"""Pre-activation ResNet for CIFAR-10 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

Used by the original's quantization (PACT, DoReFa) and knowledge-distillation examples. Names follow
the original ``preresnet_cifar.py``: blocks have ``pre_bn``, ``pre_relu``, ``conv1``, ``bn``, ``relu``,
``conv2``; the network ends with ``final_bn``, ``final_relu``. Like the post-activation ResNet it has
layer gates. Width-changing shortcuts are either parameter-free (2x2 average pool + zero-padded
channels, "option A") or, in the ``_conv_ds`` variants, a strided 1x1 conv fed by the pre-activation.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models._common import conv1x1, conv3x3, he_init, make_layer_gates
from distiller.models.cifar10.resnet_cifar import BLOCKS
from distiller.models.zoo import builtin_model

__all__ = ["PreactBasicBlock", "PreactResNetCifar"]


class PreactBasicBlock(nn.Module):
    """BN-ReLU-conv-BN-ReLU-conv + shortcut; ``block_gates[i]`` False bypasses conv i+1."""

    expansion = 1

    def __init__(
        self,
        block_gates: list[bool],
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        preact_downsample: bool = True,
    ) -> None:
        super().__init__()
        self.block_gates = block_gates
        self.pre_bn = nn.BatchNorm2d(inplanes)
        self.pre_relu = nn.ReLU(inplace=False)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=False)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride
        self.preact_downsample = preact_downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut_uses_preact = self.downsample is not None and self.preact_downsample
        if self.block_gates[0] or self.block_gates[1] or shortcut_uses_preact:
            preact = self.pre_relu(self.pre_bn(x))
        else:
            preact = x
        out = preact
        if self.block_gates[0]:
            out = self.relu(self.bn(self.conv1(out)))
        if self.block_gates[1]:
            out = self.conv2(out)
        if self.downsample is None:
            residual = x
        else:
            residual = self.downsample(preact if self.preact_downsample else x)
        return out + residual


def _pad_shortcut(inplanes: int) -> nn.Sequential:
    """Option-A shortcut doubling the width: 2x2 average pool, then zero channels on both sides."""
    pad = inplanes // 2
    return nn.Sequential(nn.AvgPool2d(2), nn.ConstantPad3d((0, 0, 0, 0, pad, pad), 0.0))


class PreactResNetCifar(nn.Module):
    """conv, three stages of :class:`PreactBasicBlock` (16, 32, 64), final BN-ReLU, 8x8 pool, Linear."""

    def __init__(
        self,
        block: type[PreactBasicBlock],
        layers: list[int],
        num_classes: int = 10,
        conv_downsample: bool = False,
    ) -> None:
        super().__init__()
        self.layer_gates = make_layer_gates(layers)
        self.inplanes = 16
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(self.layer_gates[0], block, 16, layers[0], 1, conv_downsample)
        self.layer2 = self._make_layer(self.layer_gates[1], block, 32, layers[1], 2, conv_downsample)
        self.layer3 = self._make_layer(self.layer_gates[2], block, 64, layers[2], 2, conv_downsample)
        self.final_bn = nn.BatchNorm2d(64 * block.expansion)
        self.final_relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8, stride=1)
        self.fc = nn.Linear(64 * block.expansion, num_classes)
        he_init(self)

    def _make_layer(
        self,
        gates: list[list[bool]],
        block: type[PreactBasicBlock],
        planes: int,
        blocks: int,
        stride: int,
        conv_downsample: bool,
    ) -> nn.Sequential:
        outplanes = planes * block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != outplanes:
            downsample = conv1x1(self.inplanes, outplanes, stride) if conv_downsample else _pad_shortcut(self.inplanes)
        # The parameter-free shortcut takes the raw input; the conv shortcut takes the pre-activation.
        layers = [block(gates[0], self.inplanes, planes, stride, downsample, conv_downsample)]
        self.inplanes = outplanes
        layers += [block(gates[i], self.inplanes, planes) for i in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.final_relu(self.final_bn(x))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


def _preact(depth: int, num_classes: int, conv_downsample: bool = False) -> PreactResNetCifar:
    return PreactResNetCifar(PreactBasicBlock, [BLOCKS[depth]] * 3, num_classes, conv_downsample)


@builtin_model("preact_resnet20_cifar", "cifar10")
def preact_resnet20_cifar(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-20 with parameter-free shortcuts."""
    return _preact(20, num_classes)


@builtin_model("preact_resnet32_cifar", "cifar10")
def preact_resnet32_cifar(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-32 with parameter-free shortcuts."""
    return _preact(32, num_classes)


@builtin_model("preact_resnet44_cifar", "cifar10")
def preact_resnet44_cifar(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-44 with parameter-free shortcuts."""
    return _preact(44, num_classes)


@builtin_model("preact_resnet56_cifar", "cifar10")
def preact_resnet56_cifar(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-56 with parameter-free shortcuts."""
    return _preact(56, num_classes)


@builtin_model("preact_resnet110_cifar", "cifar10")
def preact_resnet110_cifar(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-110 with parameter-free shortcuts."""
    return _preact(110, num_classes)


@builtin_model("preact_resnet20_cifar_conv_ds", "cifar10")
def preact_resnet20_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-20 with 1x1-conv shortcuts."""
    return _preact(20, num_classes, conv_downsample=True)


@builtin_model("preact_resnet32_cifar_conv_ds", "cifar10")
def preact_resnet32_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-32 with 1x1-conv shortcuts."""
    return _preact(32, num_classes, conv_downsample=True)


@builtin_model("preact_resnet44_cifar_conv_ds", "cifar10")
def preact_resnet44_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-44 with 1x1-conv shortcuts."""
    return _preact(44, num_classes, conv_downsample=True)


@builtin_model("preact_resnet56_cifar_conv_ds", "cifar10")
def preact_resnet56_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-56 with 1x1-conv shortcuts."""
    return _preact(56, num_classes, conv_downsample=True)


@builtin_model("preact_resnet110_cifar_conv_ds", "cifar10")
def preact_resnet110_cifar_conv_ds(num_classes: int = 10) -> PreactResNetCifar:
    """Pre-activation ResNet-110 with 1x1-conv shortcuts."""
    return _preact(110, num_classes, conv_downsample=True)
