"""Factorizing ``nn.Conv2d`` two ways: across channels, or across the two spatial axes.

**Channel** (the SVD of the weight seen as ``C_out × (C_in·kh·kw)``): a ``kh × kw`` convolution to
``k`` channels, then a ``1 × 1`` convolution to ``C_out``. The first keeps the stride, padding and
dilation; the second mixes channels at every position. It is the Linear factorization applied to
each receptive field, so the same break-even rank formula holds.

**Spatial** (Jaderberg, Vedaldi & Zisserman 2014, scheme 2; Tai et al. 2016): the weight rearranged
as ``M[(o, j), (c, i)] = W[o, c, i, j]``, of shape ``(C_out·kw) × (C_in·kh)``. Its factors
``M ≈ A B`` give a vertical ``kh × 1`` convolution to ``k`` channels (``B``) and a horizontal
``1 × kw`` convolution to ``C_out`` (``A``); their composition has the kernel ``Σ_r A B = W``, so
the factorization is exact at full rank ``min(C_out·kw, C_in·kh)``. The height parts of stride,
padding and dilation go to the vertical convolution, the width parts to the horizontal one. That is
exact with any ``padding_mode``: the vertical convolution works on each column independently and has
no bias, so padding its output in width equals padding its input in width.

Grouped and depthwise convolutions are refused: their weight is a stack of small per-group
matrices, and factorizing each group is a different operation.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.low_rank.cost import check_method, full_rank, matrix_shape
from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.svd import LowRankFactors, check_rank, truncated_svd

__all__ = ["conv_matrix", "conv_structure", "factorize_conv"]


def conv_matrix(layer: nn.Conv2d, method: str) -> torch.Tensor:
    """The matrix whose SVD ``method`` takes (a view or copy of the weight; rows are outputs)."""
    weight = layer.weight.detach()
    c_out = weight.shape[0]
    if method == "channel":
        return weight.reshape(c_out, -1)
    rows, cols = matrix_shape(layer, "spatial")
    return weight.permute(0, 3, 1, 2).reshape(rows, cols)  # (o, j, c, i)


def _split_pair(value: tuple[int, ...] | str, neutral: int) -> tuple[tuple[int, int] | str, tuple[int, int] | str]:
    """(height-only, width-only) versions of a per-axis attribute; strings (``same``) go to both."""
    if isinstance(value, str):
        return value, value
    h, w = value
    return (h, neutral), (neutral, w)


def conv_structure(layer: nn.Conv2d, method: str, rank: int) -> FactorizedLayer:
    """The two-convolution replacement of ``layer`` at ``rank``, with uninitialized weights.

    Raises:
        ConfigError: a grouped convolution, a method other than ``channel``/``spatial``, ``rank``
            outside [1, full rank].
    """
    method = check_method(layer, method)
    check_rank(rank, full_rank(layer, method))
    kwargs = {"device": layer.weight.device, "dtype": layer.weight.dtype, "padding_mode": layer.padding_mode}
    kh, kw = layer.kernel_size
    has_bias = layer.bias is not None
    if method == "channel":
        first = nn.Conv2d(
            layer.in_channels,
            rank,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            bias=False,
            **kwargs,
        )
        second = nn.Conv2d(rank, layer.out_channels, 1, bias=has_bias, **kwargs)
    else:
        stride_h, stride_w = _split_pair(layer.stride, 1)
        pad_h, pad_w = _split_pair(layer.padding, 0)
        dil_h, dil_w = _split_pair(layer.dilation, 1)
        first = nn.Conv2d(
            layer.in_channels, rank, (kh, 1), stride=stride_h, padding=pad_h, dilation=dil_h, bias=False, **kwargs
        )
        second = nn.Conv2d(
            rank, layer.out_channels, (1, kw), stride=stride_w, padding=pad_w, dilation=dil_w, bias=has_bias, **kwargs
        )
    out = FactorizedLayer(first, second, method, rank)
    out.train(layer.training)
    return out


@torch.no_grad()
def fill_conv(target: FactorizedLayer, layer: nn.Conv2d, factors: LowRankFactors) -> FactorizedLayer:
    """Reshape ``factors`` of :func:`conv_matrix` into ``target``'s two kernels; copy the bias."""
    first, second = target[0], target[1]
    rank = factors.rank
    c_out, c_in, kh, kw = layer.weight.shape
    if target.method == "channel":
        first.weight.copy_(factors.right.reshape(rank, c_in, kh, kw))
        second.weight.copy_(factors.left.reshape(c_out, rank, 1, 1))
    else:
        first.weight.copy_(factors.right.reshape(rank, c_in, kh, 1))
        second.weight.copy_(factors.left.reshape(c_out, kw, rank).permute(0, 2, 1).unsqueeze(2))
    if layer.bias is not None:
        second.bias.copy_(layer.bias)
    for param in (first.weight, second.weight, second.bias):
        if param is not None:
            param.requires_grad_(layer.weight.requires_grad)
    return target


def factorize_conv(
    layer: nn.Conv2d,
    rank: int | None = None,
    *,
    energy: float | None = None,
    method: str = "channel",
    split: str = "sqrt",
) -> tuple[FactorizedLayer, LowRankFactors]:
    """The rank-``k`` replacement of ``layer`` by ``method`` (exact at full rank) and its factors.

    Args:
        layer: an ungrouped ``nn.Conv2d`` (left unchanged).
        rank: the number of singular values kept.
        energy: instead of ``rank``, the share of the squared singular values to keep.
        method: ``channel`` or ``spatial`` (see the module docstring).
        split: where the singular values go (``sqrt``, ``first``, ``second``).

    Raises:
        ConfigError: a grouped convolution, an unknown method, neither or both of ``rank`` and
            ``energy``, or either out of range.
    """
    method = check_method(layer, method)
    factors = truncated_svd(conv_matrix(layer, method), rank, energy=energy, split=split)
    return fill_conv(conv_structure(layer, method, factors.rank), layer, factors), factors
