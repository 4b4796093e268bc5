"""Structure pruning by a threshold on each structure's norm (the original's ``StructureParameterPruner``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.pruning.base import Pruner, register_pruner
from distiller.sparsity.criteria import structure_threshold_mask
from distiller.sparsity.granularity import granularity_from_name

__all__ = ["THRESHOLD_CRITERIA", "StructureParameterPruner"]

THRESHOLD_CRITERIA: dict[str, tuple[int | str, bool]] = {
    "Max": ("max", False),
    "Mean_Abs": (1, True),
}
"""``threshold_criteria`` -> (norm, length-normalized): the largest magnitude, or the mean magnitude
(a size-independent threshold, the reason the original used the mean rather than the L1 norm)."""


@register_pruner
class StructureParameterPruner(Pruner):
    """Prune every structure whose norm is at most its parameter's threshold.

    Args:
        name: instance name.
        model: the model (kept for the original's signature; the schedule passes it).
        reg_regims: ``{param_name: [threshold, group_type]}``, e.g. ``{conv1.weight: [0.01, Filters]}``.
        threshold_criteria: ``Max`` or ``Mean_Abs``.
    """

    def __init__(
        self,
        name: str,
        model: nn.Module | None,
        reg_regims: Mapping[str, Sequence[Any]],
        threshold_criteria: str,
    ) -> None:
        super().__init__(name)
        if threshold_criteria not in THRESHOLD_CRITERIA:
            raise ConfigError(
                f"StructureParameterPruner {name!r}: threshold_criteria must be one of "
                f"{', '.join(THRESHOLD_CRITERIA)}; got {threshold_criteria!r}."
            )
        self.model = model
        self.threshold_criteria = threshold_criteria
        self.reg_regims: dict[str, tuple[float, str]] = {}
        for key, regim in reg_regims.items():
            if not isinstance(regim, Sequence) or isinstance(regim, str) or len(regim) != 2:
                raise ConfigError(f"reg_regims[{key!r}] must be [threshold, group_type]; got {regim!r}.")
            granularity_from_name(regim[1])  # validate early
            self.reg_regims[normalize_module_name(key)] = (float(regim[0]), regim[1])
        self.rate = lambda param_name, meta: (self.reg_regims.get(param_name) or (None,))[0]

    def configured_names(self) -> list[str]:
        return list(self.reg_regims)

    def make_mask(self, param, param_name, target, current_mask, meta):
        p, length_normalized = THRESHOLD_CRITERIA[self.threshold_criteria]
        group_type = self.reg_regims[param_name][1]
        return structure_threshold_mask(param, target, group_type, p=p, length_normalized=length_normalized)
