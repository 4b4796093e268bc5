"""ResNet for CIFAR-10 with one early exit, as the original Distiller's ``resnet*_cifar_earlyexit``.

The exit sits after the third block of the first stage (``layer1.2.relu2``, 16 x 32 x 32), with the
original's branch: ``AvgPool2d(3)`` (to 16 x 10 x 10) -> flatten -> ``Linear(1600, num_classes)``.
The backbone is :class:`~distiller.models.cifar10.resnet_cifar.ResNetCifar` unchanged (same module
and parameter names, so ``resnet20_cifar`` weights load into it with ``strict=False``); the branch is
``early_exits.0`` and the forward returns ``[exit_0, final]``.
"""

from __future__ import annotations

from torch import nn

from distiller.early_exit import attach_exits
from distiller.models.cifar10.resnet_cifar import BLOCKS, BasicBlock, ResNetCifar
from distiller.models.zoo import builtin_model

__all__ = ["cifar_exits_def", "resnet_cifar_earlyexit"]


def cifar_exits_def(num_classes: int = 10) -> list[tuple[str, nn.Module]]:
    """The original's exit: after ``layer1.2.relu2``, average-pool 3x3, flatten, Linear(1600, classes)."""
    branch = nn.Sequential(nn.AvgPool2d(3), nn.Flatten(), nn.Linear(1600, num_classes))
    return [("layer1.2.relu2", branch)]


def resnet_cifar_earlyexit(depth: int, num_classes: int = 10) -> ResNetCifar:
    """ResNet-``depth`` for CIFAR-10 with the original's early exit attached."""
    model = ResNetCifar(BasicBlock, [BLOCKS[depth]] * 3, num_classes=num_classes)
    attach_exits(model, cifar_exits_def(num_classes))
    return model


def _register(depth: int):
    name = f"resnet{depth}_cifar_earlyexit"

    @builtin_model(name, "cifar10")
    def build(num_classes: int = 10) -> ResNetCifar:
        return resnet_cifar_earlyexit(depth, num_classes)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"ResNet-{depth} for CIFAR-10 with one early exit after layer1.2.relu2; returns [exit_0, final]."
    return build


resnet20_cifar_earlyexit = _register(20)
resnet32_cifar_earlyexit = _register(32)
resnet44_cifar_earlyexit = _register(44)
resnet56_cifar_earlyexit = _register(56)
resnet110_cifar_earlyexit = _register(110)
resnet1202_cifar_earlyexit = _register(1202)
