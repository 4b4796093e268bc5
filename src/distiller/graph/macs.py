"""Multiply-accumulate counts of layers, as pure functions of their shapes.

Conventions are the original Distiller's (``--summary compute``): counts are per sample (the batch
dimension is excluded), biases are ignored, a convolution costs ``vol(OFM) * C_in / groups * k_h *
k_w`` and a fully-connected layer ``in_features * out_features`` per output row.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def volume(shape: Sequence[int]) -> int:
    """Number of elements of a tensor of ``shape``."""
    return math.prod(int(d) for d in shape)


def per_sample(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` without its batch dimension."""
    return tuple(int(d) for d in shape[1:])


def conv_macs(module: nn.Module, ofm_shape: Sequence[int], ifm_shape: Sequence[int] | None = None) -> int:
    """MACs of one sample through a (transposed) convolution producing ``ofm_shape`` (with batch dim)."""
    kernel = volume(module.kernel_size)
    if isinstance(module, _CONV_T):  # every input element is scattered over kernel * out/groups outputs
        if ifm_shape is None:
            raise ValueError("transposed convolutions need the input shape")
        return volume(per_sample(ifm_shape)) * kernel * module.out_channels // module.groups
    return volume(per_sample(ofm_shape)) * kernel * module.in_channels // module.groups


def linear_macs(module: nn.Linear, ofm_shape: Sequence[int]) -> int:
    """MACs of one sample through a Linear layer (every output element costs ``in_features``)."""
    return volume(per_sample(ofm_shape)) * module.in_features


def matmul_macs(ofm_shape: Sequence[int], inner: int) -> int:
    """MACs of one sample of a (batched) matrix product with contraction length ``inner``."""
    return volume(per_sample(ofm_shape)) * int(inner)


def module_macs(module: nn.Module, ifm_shape: Sequence[int] | None, ofm_shape: Sequence[int] | None) -> int:
    """MACs of ``module`` for one sample, or 0 for layers that are not convolutions or Linear."""
    if ofm_shape is None:
        return 0
    if isinstance(module, _CONV + _CONV_T):
        return conv_macs(module, ofm_shape, ifm_shape)
    if isinstance(module, nn.Linear):
        return linear_macs(module, ofm_shape)
    return 0
