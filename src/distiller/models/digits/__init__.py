"""Models for the bundled 8x8 digits dataset (1x8x8 inputs, 10 classes)."""

from distiller.models.digits.convnet_digits import ConvnetDigits, convnet_digits
from distiller.models.digits.simplenet_digits import SimplenetDigits, simplenet_digits

__all__ = ["ConvnetDigits", "SimplenetDigits", "convnet_digits", "simplenet_digits"]
