"""Parameters, MACs and break-even ranks of low-rank factorizations, in closed form.

For each method the factorized layer costs ``rank × (per-rank cost)`` plus the unchanged bias, and
the dense layer costs a fixed amount, so the break-even rank (the largest rank that costs no more
than the dense layer) is ``⌊dense / per-rank⌋``:

=========  ===============================  ===============================  ==============================
method     dense weights                    weights per rank                 MACs per output position
=========  ===============================  ===============================  ==============================
linear     ``in · out``                     ``in + out``                     same as weights
channel    ``C_out · C_in · kh · kw``       ``C_in · kh · kw + C_out``       same as weights
spatial    ``C_out · C_in · kh · kw``       ``C_in · kh + C_out · kw``       see :func:`factorized_cost`
=========  ===============================  ===============================  ==============================

For ``linear`` and ``channel`` every rank costs the same MACs at every output position as it costs
weights, so the parameter and MAC break-even ranks coincide. The spatial method's first (``kh × 1``)
convolution runs on every input column (its width is not strided), so its MACs depend on the feature
map, and its MAC break-even rank can be below its parameter break-even rank.

MAC conventions are :mod:`distiller.graph.macs`'s: per sample, biases ignored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from distiller.errors import ConfigError

__all__ = [
    "CONV_METHODS",
    "METHODS",
    "Cost",
    "break_even_rank",
    "default_method",
    "dense_cost",
    "factorized_cost",
    "full_rank",
]

CONV_METHODS = ("channel", "spatial")
METHODS = ("linear", *CONV_METHODS)


@dataclass(frozen=True)
class Cost:
    """Parameters (weights and biases) and MACs per sample (``None`` when the input size is unknown)."""

    params: int
    macs: int | None


def default_method(layer: nn.Module) -> str:
    """``linear`` for ``nn.Linear``, ``channel`` for ``nn.Conv2d``.

    Raises:
        ConfigError: a layer type that cannot be factorized.
    """
    check_layer(layer)
    return "linear" if isinstance(layer, nn.Linear) else "channel"


def check_layer(layer: nn.Module, name: str = "the layer") -> None:
    """Accept ``nn.Linear`` and ungrouped ``nn.Conv2d``; refuse anything else with the reason.

    Raises:
        ConfigError: another type, a grouped/depthwise convolution.
    """
    if isinstance(getattr(layer, "weight", None), nn.parameter.UninitializedParameter):
        raise ConfigError(f"{name} is a lazy layer that has not run yet; run one forward pass before factorizing it.")
    if isinstance(layer, nn.Linear):
        return
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            raise ConfigError(
                f"{name} is a grouped convolution (groups={layer.groups}); its weight is a block-diagonal stack of "
                "small matrices, not one matrix to factorize. Choose an ungrouped layer."
            )
        return
    raise ConfigError(
        f"{name} is a {type(layer).__name__}; low-rank factorization supports nn.Linear and nn.Conv2d. "
        "Choose one of those layers."
    )


def check_method(layer: nn.Module, method: str | None, name: str = "the layer") -> str:
    """The method to use on ``layer`` (``None`` -> :func:`default_method`).

    Raises:
        ConfigError: an unknown method, or one that does not fit the layer type.
    """
    check_layer(layer, name)
    if method is None:
        return default_method(layer)
    if method not in METHODS:
        raise ConfigError(f"method of {name} must be one of {', '.join(METHODS)}; got {method!r}.")
    expected = ("linear",) if isinstance(layer, nn.Linear) else CONV_METHODS
    if method not in expected:
        raise ConfigError(
            f"method {method!r} does not apply to {name} ({type(layer).__name__}); use {' or '.join(expected)}."
        )
    return method


def _bias(layer: nn.Module) -> int:
    return 0 if layer.bias is None else int(layer.bias.numel())


def _kernel(layer: nn.Conv2d) -> tuple[int, int]:
    kh, kw = layer.kernel_size
    return int(kh), int(kw)


def matrix_shape(layer: nn.Module, method: str) -> tuple[int, int]:
    """The shape of the matrix whose SVD ``method`` takes (rows become the second layer's outputs)."""
    if method == "linear":
        return int(layer.out_features), int(layer.in_features)
    kh, kw = _kernel(layer)
    if method == "channel":
        return int(layer.out_channels), int(layer.in_channels) * kh * kw
    return int(layer.out_channels) * kw, int(layer.in_channels) * kh


def full_rank(layer: nn.Module, method: str | None = None) -> int:
    """The largest meaningful rank: the smaller side of the factorized matrix (exact at that rank)."""
    method = check_method(layer, method)
    return min(matrix_shape(layer, method))


def _conv_out(size: int, kernel: int, stride: int, padding: int | str, dilation: int) -> int:
    if padding == "same":
        return size
    pad = 0 if padding == "valid" else int(padding)
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


def _spatial(layer: nn.Conv2d, input_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H_out, W_out, W_in)`` of a convolution on a per-sample input ``(C, H, W)``."""
    if len(input_shape) != 3:
        raise ConfigError(f"input_shape of a Conv2d must be (C, H, W) of one sample; got {tuple(input_shape)}.")
    _, h, w = (int(d) for d in input_shape)
    kh, kw = _kernel(layer)
    pads = layer.padding if isinstance(layer.padding, str) else tuple(layer.padding)
    ph, pw = (pads, pads) if isinstance(pads, str) else pads
    sh, sw = layer.stride
    dh, dw = layer.dilation
    return _conv_out(h, kh, sh, ph, dh), _conv_out(w, kw, sw, pw, dw), w


def _rows(input_shape: Sequence[int] | None) -> int:
    """How many vectors a Linear layer multiplies per sample (1 for a flat input)."""
    return 1 if input_shape is None else math.prod(int(d) for d in input_shape[:-1])


def dense_cost(layer: nn.Module, input_shape: Sequence[int] | None = None) -> Cost:
    """Parameters and MACs of the layer as it is.

    Args:
        layer: an ``nn.Linear`` or ``nn.Conv2d``.
        input_shape: the per-sample input shape (without batch); convolutions need it for MACs.
    """
    check_layer(layer)
    params = int(layer.weight.numel()) + _bias(layer)
    if isinstance(layer, nn.Linear):
        return Cost(params, _rows(input_shape) * int(layer.weight.numel()))
    if input_shape is None:
        return Cost(params, None)
    h_out, w_out, _ = _spatial(layer, input_shape)
    return Cost(params, h_out * w_out * int(layer.weight.numel()))


def factorized_cost(layer: nn.Module, method: str | None, rank: int, input_shape: Sequence[int] | None = None) -> Cost:
    """Parameters and MACs of ``layer`` factorized at ``rank`` by ``method`` (before replacing it).

    Spatial MACs: the ``kh × 1`` convolution produces ``H_out × W_in`` positions (``W_in`` the input
    width: its width is neither padded nor strided) at ``rank · C_in · kh`` each, the ``1 × kw``
    convolution ``H_out × W_out`` positions at ``C_out · rank · kw``.
    """
    method = check_method(layer, method)
    rows, cols = matrix_shape(layer, method)
    params = rank * (rows + cols) + _bias(layer)
    if method == "linear":
        return Cost(params, _rows(input_shape) * rank * (rows + cols))
    if input_shape is None:
        return Cost(params, None)
    h_out, w_out, w_in = _spatial(layer, input_shape)
    if method == "channel":
        return Cost(params, h_out * w_out * rank * (rows + cols))
    kh, kw = _kernel(layer)
    first = h_out * w_in * rank * int(layer.in_channels) * kh
    second = h_out * w_out * int(layer.out_channels) * rank * kw
    return Cost(params, first + second)


def break_even_rank(layer: nn.Module, method: str | None = None, input_shape: Sequence[int] | None = None) -> int:
    """The largest rank whose factorization has no more parameters (nor MACs) than ``layer``.

    Linear: ``k·(in + out) ≤ in·out``, so ``k ≤ in·out / (in + out)`` (the bias is the same on both
    sides). Channel: ``k ≤ C_out·C_in·kh·kw / (C_in·kh·kw + C_out)``. Spatial:
    ``k ≤ C_out·C_in·kh·kw / (C_in·kh + C_out·kw)``, and, given ``input_shape``, also the MAC bound.
    A rank above this makes the layer bigger; 0 means no factorization of this layer pays off.

    Args:
        layer: an ``nn.Linear`` or ``nn.Conv2d``.
        method: ``linear``, ``channel`` or ``spatial`` (default: the layer's :func:`default_method`).
        input_shape: the per-sample input shape; only the spatial method's MAC bound needs it.
    """
    method = check_method(layer, method)
    rows, cols = matrix_shape(layer, method)
    best = (rows * cols) // (rows + cols)
    if method == "spatial" and input_shape is not None:
        dense = dense_cost(layer, input_shape).macs
        per_rank = factorized_cost(layer, method, 1, input_shape).macs
        if dense is not None and per_rank:
            best = min(best, dense // per_rank)
    return best
