"""Group Lasso and group variance: penalties that zero whole structures, not single weights.

Group Lasso (Yuan & Lin 2006; SSL, Wen et al. 2016) penalizes the sum of the L2 norms of the
structures (filters, input channels, kernels, rows, columns, the whole layer). Because the L2 norm
of a group is not differentiable at zero in a way that favours any single element, the penalty
drives entire groups to zero together, which is what lets thinning remove them afterwards. Norms
are plain (not divided by the group size), as in the original, so larger groups are penalized
more; overlapping sums (``Rows+Cols``, ``Channels+4D``) simply add the two penalties.

Setting the optimizer's weight decay as well gives Sparse Group Lasso (Friedman et al. 2010).
Group variance (Torfi et al. 2018, "Guided Structured Sparsity") instead *rewards* a spread of
channel norms, so that some channels grow while others shrink; it is used together with Group
Lasso.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.regularization.base import EPSILON, Regularizer, register_regularizer
from distiller.regularization.groups import GroupRegime, group_lasso_penalty, group_norms, parse_group_regime
from distiller.sparsity.thresholding import group_threshold_mask, threshold_criteria_norm

__all__ = ["GroupLassoRegularizer", "GroupVarianceRegularizer"]


def _check_criteria(criteria: str | None, where: str) -> None:
    if criteria is None:
        return
    if not isinstance(criteria, str):
        raise ConfigError(f"{where}: threshold_criteria must be a name such as 'Mean_Abs' or 'Max', got {criteria!r}.")
    try:
        threshold_criteria_norm(criteria)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err} Omit threshold_criteria to never threshold.") from None


@register_regularizer()
class GroupLassoRegularizer(Regularizer):
    """``strength * sum_groups ||g||_2`` per parameter of ``reg_regims`` (``{name: [strength, group_type]}``).

    Group types: ``2D`` (alias ``Kernels``), ``Rows``, ``Cols``, ``Rows+Cols``, ``Channels``
    (input channels; columns of a 2-D weight), ``Filters``/``3D``, ``4D`` (alias ``Layer``, the
    whole tensor) and ``Channels+4D``.

    Args:
        name: the instance name.
        model: the model.
        reg_regims: ``{parameter name: [strength, group_type]}``.
        threshold_criteria: ``None`` (never threshold), ``'Max'`` (a structure survives if its
            largest magnitude exceeds the strength) or ``'Mean_Abs'`` (if its mean magnitude does);
            the other criteria of :data:`distiller.sparsity.thresholding.THRESHOLD_CRITERIA`
            (``'L1'``, ``'L2'``, ``'Mean_L2'``) work too. The threshold is the strength itself, as
            in the original; for a combined group type a weight survives only if every one of its
            structures does.
    """

    allowed_group_types: tuple[str, ...] | None = None

    def __init__(
        self,
        name: str,
        model: nn.Module,
        reg_regims: dict[str, Any],
        threshold_criteria: str | None = None,
    ) -> None:
        _check_criteria(threshold_criteria, f"{type(self).__name__} {name!r}")
        super().__init__(name, model, reg_regims, threshold_criteria)

    def parse_regime(self, param_name: str, value: Any, param: torch.Tensor) -> GroupRegime:
        return parse_group_regime(value, param, self._where(param_name), self.allowed_group_types)

    def param_loss(self, param: torch.Tensor, regime: GroupRegime) -> torch.Tensor:
        return group_lasso_penalty(param, regime)

    def param_threshold_mask(self, param: torch.Tensor, regime: GroupRegime) -> torch.Tensor:
        mask = None
        for granularity in regime.granularities:
            structure_mask, _ = group_threshold_mask(param, granularity, regime.strength, self.threshold_criteria)
            mask = structure_mask if mask is None else mask * structure_mask
        return mask


@register_regularizer()
class GroupVarianceRegularizer(GroupLassoRegularizer):
    """``strength / var(channel L2 norms)`` per parameter (``{name: [strength, 'Channels']}``).

    The variance is the unbiased sample variance over the input channels, so a parameter needs at
    least two of them. It is floored at ``EPSILON`` so that equal norms (e.g. a freshly zeroed
    layer) give a large but finite loss instead of ``inf``.
    ``threshold_criteria`` works as for :class:`GroupLassoRegularizer` (the original had none).
    """

    allowed_group_types = ("Channels",)

    def __init__(
        self,
        name: str,
        model: nn.Module,
        reg_regims: dict[str, Any],
        threshold_criteria: str | None = None,
    ) -> None:
        super().__init__(name, model, reg_regims, threshold_criteria)

    def parse_regime(self, param_name: str, value: Any, param: torch.Tensor) -> GroupRegime:
        regime = super().parse_regime(param_name, value, param)
        if param.shape[1] < 2:
            raise ConfigError(
                f"{self._where(param_name)}: the variance of channel norms needs at least 2 input channels; "
                f"the parameter has shape {tuple(param.shape)}."
            )
        return regime

    def param_loss(self, param: torch.Tensor, regime: GroupRegime) -> torch.Tensor:
        variance = group_norms(param, regime.granularities[0]).var()
        return regime.strength / variance.clamp_min(EPSILON)
