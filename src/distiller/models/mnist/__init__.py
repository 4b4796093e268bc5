"""MNIST architectures of the original Distiller (1x28x28 inputs; they also take FashionMNIST)."""

from distiller.models.mnist.simplenet_mnist import Simplenet, SimplenetV2, simplenet_mnist, simplenet_v2_mnist

__all__ = ["Simplenet", "SimplenetV2", "simplenet_mnist", "simplenet_v2_mnist"]
