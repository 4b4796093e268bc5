"""Element-wise tensor arithmetic as modules.

Writing ``a + b`` in a ``forward`` hides the operation from module hooks, so activation statistics,
quantization wrappers and per-module summaries cannot see it. These modules make the operation a
named node (``layer1.0.add``) that hooks and quantizers can attach to.
"""

from __future__ import annotations

import torch
from torch import nn


class _Eltwise(nn.Module):
    """Folds a binary operation over any number of same-shaped (or broadcastable) inputs."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def _op(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _op_(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if not inputs:
            raise ValueError(f"{type(self).__name__} needs at least one input")
        result = inputs[0]
        for t in inputs[1:]:
            result = self._op_(result, t) if self.inplace else self._op(result, t)
        return result

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class EltwiseAdd(_Eltwise):
    """``inputs[0] + inputs[1] + ...``; with ``inplace`` the first input is overwritten."""

    def _op(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b

    def _op_(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.add_(b)


class EltwiseSub(_Eltwise):
    """``inputs[0] - inputs[1] - ...``."""

    def _op(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a - b

    def _op_(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.sub_(b)


class EltwiseMult(_Eltwise):
    """``inputs[0] * inputs[1] * ...``."""

    def _op(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b

    def _op_(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.mul_(b)


class EltwiseDiv(nn.Module):
    """``x / y``: a module so that the division shows up in the module graph."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.div_(y) if self.inplace else x / y

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""
