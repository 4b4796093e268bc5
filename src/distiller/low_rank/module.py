"""The module that replaces a factorized layer: two layers in sequence that know how they were made.

A plain ``nn.Sequential`` would compute the same thing; the subclass lets code recognize a layer
that is already factorized (so a schedule resumed past its decomposition epoch does not factorize
twice) and carries the method and rank for reports and checkpoints. Its children are ``0`` (reads
the input) and ``1`` (produces the output, holds the bias), so ``fc1.weight`` becomes
``fc1.0.weight`` and ``fc1.1.weight``, ``fc1.bias`` becomes ``fc1.1.bias``.
"""

from __future__ import annotations

from torch import nn

__all__ = ["FactorizedLayer"]


class FactorizedLayer(nn.Sequential):
    """``second(first(x))``, the low-rank replacement of a Linear or Conv2d layer.

    Args:
        first: the layer that projects the input onto ``rank`` components (no bias).
        second: the layer that maps the components to the outputs (the original bias).
        method: ``linear``, ``channel`` or ``spatial``.
        rank: the number of components.
    """

    def __init__(self, first: nn.Module, second: nn.Module, method: str, rank: int) -> None:
        super().__init__(first, second)
        self.method = method
        self.rank = rank

    def extra_repr(self) -> str:
        return f"method={self.method}, rank={self.rank}"
