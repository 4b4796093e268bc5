"""AlexNet with batch normalization, configured like TensorPack's DoReFa-Net AlexNet example.

Used by the original's DoReFa / quantization-aware-training examples. Module indices inside
``features`` and ``classifier`` are the original's (``features.0`` is the 12x12 stride-4 conv with
bias; later convs have no bias and are followed by BN). The classifier expects 6x6 feature maps,
so inputs must be 224x224.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.models.zoo import builtin_model

__all__ = ["AlexNetBN"]

# TensorPack's BN uses decay 0.9 and epsilon 1e-4. PyTorch's momentum is the weight of the *new*
# batch statistic, so TensorPack's decay 0.9 is PyTorch's momentum 0.1 (the original passed 0.9).
_BN = {"eps": 1e-4, "momentum": 0.1}


class AlexNetBN(nn.Module):
    """Five convs (grouped like the two-GPU original), BN after conv2-5 and fc0-1, three FC layers."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, kernel_size=12, stride=4),  # 224 -> 54
            nn.ReLU(inplace=True),
            nn.Conv2d(96, 256, kernel_size=5, padding=2, groups=2, bias=False),
            nn.BatchNorm2d(256, **_BN),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),  # 54 -> 27
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 384, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(384, **_BN),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),  # 27 -> 14
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, kernel_size=3, padding=1, groups=2, bias=False),
            nn.BatchNorm2d(384, **_BN),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, groups=2, bias=False),
            nn.BatchNorm2d(256, **_BN),
            nn.MaxPool2d(kernel_size=3, stride=2),  # 14 -> 6
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096, bias=False),
            nn.BatchNorm1d(4096, **_BN),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096, bias=False),
            nn.BatchNorm1d(4096, **_BN),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


@builtin_model("alexnet_bn", "imagenet")
def alexnet_bn(num_classes: int = 1000) -> AlexNetBN:
    """AlexNet with batch normalization (TensorPack DoReFa configuration)."""
    return AlexNetBN(num_classes)
