"""MobileNet v1 (Howard et al. 2017) in the original's two flavours.

* ``mobilenet``, ``mobilenet_025/050/075``: Distiller's own, with a width multiplier (channels never
  below 8); all layers live in ``model`` (``model.0`` is the stem, ``model.1``-``model.13`` the
  depthwise-separable blocks, ``model.14`` a 7x7 average pool, so inputs must be 224x224) and ``fc``.
* ``mobilenet_v1_dropout``: MIT HAN Lab's version used by the AMC example (``conv1``, ``features``,
  ``classifier`` = Dropout(0.2) + Linear), with global mean pooling, so any input size works.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from distiller.models._common import conv_bn_relu
from distiller.models.zoo import builtin_model

__all__ = ["MobileNet", "MobileNetV1Dropout", "depthwise_separable"]


def depthwise_separable(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    """Depthwise 3x3 conv-BN-ReLU then pointwise 1x1 conv-BN-ReLU (indices 0-5 in one Sequential)."""
    return nn.Sequential(
        *conv_bn_relu(in_planes, in_planes, 3, stride=stride, padding=1, groups=in_planes),
        *conv_bn_relu(in_planes, out_planes, 1),
    )


# (output width index into the channel list, stride) of the 13 depthwise-separable blocks.
_BLOCKS = [(1, 1), (2, 2), (2, 1), (3, 2), (3, 1), (4, 2), (4, 1), (4, 1), (4, 1), (4, 1), (4, 1), (5, 2), (5, 1)]


class MobileNet(nn.Module):
    """Distiller's MobileNet v1 with a channel multiplier."""

    def __init__(self, channel_multiplier: float = 1.0, min_channels: int = 8, num_classes: int = 1000) -> None:
        super().__init__()
        if channel_multiplier <= 0:
            raise ValueError("channel_multiplier must be > 0")
        base = [32, 64, 128, 256, 512, 1024]
        self.channels = [max(math.floor(n * channel_multiplier), min_channels) for n in base]
        layers: list[nn.Module] = [nn.Sequential(*conv_bn_relu(3, self.channels[0], 3, stride=2, padding=1))]
        in_planes = self.channels[0]
        for width_index, stride in _BLOCKS:
            layers.append(depthwise_separable(in_planes, self.channels[width_index], stride))
            in_planes = self.channels[width_index]
        layers.append(nn.AvgPool2d(7))
        self.model = nn.Sequential(*layers)
        self.fc = nn.Linear(self.channels[5], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.model(x), 1))


class MobileNetV1Dropout(nn.Module):
    """HAN Lab's MobileNet v1 (for AMC): ``conv1``, ``features``, ``classifier`` with dropout."""

    def __init__(self, num_classes: int = 1000, channel_multiplier: float = 1.0) -> None:
        super().__init__()
        in_planes = int(32 * channel_multiplier)
        a = int(64 * channel_multiplier)
        cfg: list[int | tuple[int, int]] = [
            a, (a * 2, 2), a * 2, (a * 4, 2), a * 4, (a * 8, 2), a * 8, a * 8, a * 8, a * 8, a * 8, (a * 16, 2), a * 16,
        ]  # fmt: skip
        self.conv1 = nn.Sequential(*conv_bn_relu(3, in_planes, 3, stride=2, padding=1))
        blocks = []
        for item in cfg:
            out_planes, stride = item if isinstance(item, tuple) else (item, 1)
            blocks.append(depthwise_separable(in_planes, out_planes, stride))
            in_planes = out_planes
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(in_planes, num_classes))
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.conv1(x))
        return self.classifier(x.mean(dim=(2, 3)))


@builtin_model("mobilenet", "imagenet")
def mobilenet(num_classes: int = 1000) -> MobileNet:
    """MobileNet v1, full width (4.2M parameters)."""
    return MobileNet(1.0, num_classes=num_classes)


@builtin_model("mobilenet_025", "imagenet")
def mobilenet_025(num_classes: int = 1000) -> MobileNet:
    """MobileNet v1 at width 0.25."""
    return MobileNet(0.25, num_classes=num_classes)


@builtin_model("mobilenet_050", "imagenet")
def mobilenet_050(num_classes: int = 1000) -> MobileNet:
    """MobileNet v1 at width 0.5."""
    return MobileNet(0.5, num_classes=num_classes)


@builtin_model("mobilenet_075", "imagenet")
def mobilenet_075(num_classes: int = 1000) -> MobileNet:
    """MobileNet v1 at width 0.75."""
    return MobileNet(0.75, num_classes=num_classes)


@builtin_model("mobilenet_v1_dropout", "imagenet")
def mobilenet_v1_dropout(num_classes: int = 1000) -> MobileNetV1Dropout:
    """HAN Lab's MobileNet v1 with dropout, the AMC example's model."""
    return MobileNetV1Dropout(num_classes)
