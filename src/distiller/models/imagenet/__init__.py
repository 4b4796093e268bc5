"""ImageNet architectures of the original Distiller (3x224x224 inputs, 1000 classes)."""

from distiller.models.imagenet.alexnet_batchnorm import AlexNetBN, alexnet_bn
from distiller.models.imagenet.mobilenet import (
    MobileNet,
    MobileNetV1Dropout,
    mobilenet,
    mobilenet_025,
    mobilenet_050,
    mobilenet_075,
    mobilenet_v1_dropout,
)
from distiller.models.imagenet.preresnet_imagenet import (
    PreactResNet,
    preact_resnet18,
    preact_resnet34,
    preact_resnet50,
    preact_resnet101,
    preact_resnet152,
)
from distiller.models.imagenet.resnet import (
    DistillerBasicBlock,
    DistillerBottleneck,
    ResNet,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    wide_resnet50_2,
    wide_resnet101_2,
)
from distiller.models.imagenet.resnet_earlyexit import resnet50_earlyexit

__all__ = [
    "AlexNetBN",
    "DistillerBasicBlock",
    "DistillerBottleneck",
    "MobileNet",
    "MobileNetV1Dropout",
    "PreactResNet",
    "ResNet",
    "alexnet_bn",
    "mobilenet",
    "mobilenet_025",
    "mobilenet_050",
    "mobilenet_075",
    "mobilenet_v1_dropout",
    "preact_resnet18",
    "preact_resnet34",
    "preact_resnet50",
    "preact_resnet101",
    "preact_resnet152",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet50_earlyexit",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]
