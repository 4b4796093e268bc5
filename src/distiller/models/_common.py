"""Building blocks shared by several model families (ResNet variants, VGG, MobileNet)."""

from __future__ import annotations

from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution with 'same' padding and no bias (a BatchNorm follows and supplies the shift)."""
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        dilation=dilation,
        bias=False,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias, used for projections and bottlenecks."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def projection_shortcut(in_planes: int, out_planes: int, stride: int, batch_norm: bool = True) -> nn.Sequential:
    """ResNet's "option B" shortcut: strided 1x1 conv (+ BN), named ``downsample.0`` / ``downsample.1``."""
    layers: list[nn.Module] = [conv1x1(in_planes, out_planes, stride)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_planes))
    return nn.Sequential(*layers)


def conv_bn_relu(
    in_planes: int,
    out_planes: int,
    kernel_size: int,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> list[nn.Module]:
    """Conv (no bias) -> BN -> ReLU as a list, so callers choose how to nest it in Sequentials."""
    return [
        nn.Conv2d(in_planes, out_planes, kernel_size, stride=stride, padding=padding, groups=groups, bias=False),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(inplace=True),
    ]


def make_layer_gates(blocks_per_layer: list[int], convs_per_block: int = 2) -> list[list[list[bool]]]:
    """``gates[layer][block] = [True] * convs_per_block``: the switches that bypass convolutions.

    The lists are shared with the blocks (each block keeps a reference to its own list), so flipping
    ``model.layer_gates[1][2][0] = False`` removes that convolution from the forward pass at once.
    """
    return [[[True] * convs_per_block for _ in range(n)] for n in blocks_per_layer]


def he_init(model: nn.Module) -> None:
    """He-normal (fan_out) conv weights, BN weight 1 / bias 0: the init of the original ResNets."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d, nn.GroupNorm)) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
