"""Element-wise L1 regularization (lasso).

The penalty ``strength * sum(|w|)`` pushes individual weights towards zero; its threshold turns
the weights that are already within ``strength`` of zero into exact zeros. Network Slimming
(Liu et al. 2017) applies it to BatchNorm scale factors to rank channels.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distiller.regularization.base import Regularizer, register_regularizer
from distiller.sparsity.criteria import threshold_mask

__all__ = ["L1Regularizer"]


@register_regularizer()
class L1Regularizer(Regularizer):
    """``strength * sum(|w|)`` for every parameter of ``reg_regims`` (``{name: strength}``).

    Args:
        name: the instance name.
        model: the model.
        reg_regims: ``{parameter name: strength}``.
        threshold_criteria: any value other than ``None`` enables :meth:`threshold`, which keeps
            ``|w| > strength`` (as in the original, the criterion's value is not otherwise used).
    """

    def __init__(
        self,
        name: str,
        model: nn.Module,
        reg_regims: dict[str, Any],
        threshold_criteria: str | None = None,
    ) -> None:
        super().__init__(name, model, reg_regims, threshold_criteria)

    def param_loss(self, param: torch.Tensor, regime: float) -> torch.Tensor:
        return param.abs().sum() * regime

    def param_threshold_mask(self, param: torch.Tensor, regime: float) -> torch.Tensor:
        return threshold_mask(param, regime)
