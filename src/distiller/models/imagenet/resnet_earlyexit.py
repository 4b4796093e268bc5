"""ResNet-50 for ImageNet with two early exits, as the original Distiller's ``resnet50_earlyexit``.

Exits, with the original's branches (224 x 224 inputs):

* after ``layer1.2.relu3`` (256 x 56 x 56): ``Conv2d(256, 10, 7, stride 2, pad 3)`` -> 10 x 28 x 28,
  ``MaxPool2d(3, 2, 1)`` -> 10 x 14 x 14, flatten, ``Linear(1960, num_classes)``;
* after ``layer2.3.relu3`` (512 x 28 x 28): ``Conv2d(512, 12, 7, 2, 3)`` -> 12 x 14 x 14,
  ``MaxPool2d(3, 2, 1)`` -> 12 x 7 x 7, flatten, ``Linear(588, num_classes)``.

The backbone is Distiller's ``resnet50`` unchanged, so torchvision's ResNet-50 weights load into it
with ``strict=False`` (only ``early_exits.*`` are missing) and the exits can be trained on a
pretrained backbone. No pretrained weights exist for the exits themselves.
"""

from __future__ import annotations

from torch import nn

from distiller.early_exit import attach_exits
from distiller.models.imagenet.resnet import DistillerBottleneck, ResNet
from distiller.models.zoo import builtin_model

__all__ = ["resnet50_earlyexit", "resnet50_exits_def"]


def _branch(in_channels: int, mid_channels: int, features: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, kernel_size=7, stride=2, padding=3, bias=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        nn.Flatten(),
        nn.Linear(features, num_classes),
    )


def resnet50_exits_def(num_classes: int = 1000) -> list[tuple[str, nn.Module]]:
    """The original's two exits of ResNet-50 (branch inputs fixed by 224 x 224 images)."""
    return [
        ("layer1.2.relu3", _branch(256, 10, 1960, num_classes)),
        ("layer2.3.relu3", _branch(512, 12, 588, num_classes)),
    ]


@builtin_model("resnet50_earlyexit", "imagenet")
def resnet50_earlyexit(num_classes: int = 1000) -> ResNet:
    """ResNet-50 with two early exits (after layer1 and layer2); returns [exit_0, exit_1, final]."""
    model = ResNet(DistillerBottleneck, [3, 4, 6, 3], num_classes)
    attach_exits(model, resnet50_exits_def(num_classes))
    return model
