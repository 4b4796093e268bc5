"""Filter pruners that rank a layer's filters by statistics of the feature maps they produce.

The statistics come from :class:`distiller.analysis.activations.SummaryActivationStatsCollector`,
recorded at the activation module that *consumes* the layer's output. That module is found from
the model's structure: the first leaf module registered after the layer, skipping normalization
layers (``conv -> bn -> relu``), must be the one with statistics -- or the user names it in
``activation_modules``. The original derived the module's name by rewriting ``.conv`` into
``.relu`` in the weight's name, which only worked for models named that way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from distiller.analysis.activations import ACTIVATION_CLASSES, module_activation_stats
from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.pruning.base import register_pruner
from distiller.pruning.ranked import RankedStructurePruner
from distiller.registry import did_you_mean

__all__ = [
    "ActivationAPoZRankedFilterPruner",
    "ActivationMeanRankedFilterPruner",
    "ActivationRankedFilterPruner",
    "consumer_activation",
]

# Modules between a layer and its activation that do not change which channel is which.
_TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.Identity,
)


def consumer_activation(model: nn.Module, layer_name: str, stat_name: str) -> tuple[str, nn.Module]:
    """The activation module that consumes ``layer_name``'s output, by registration order.

    Walks the leaf modules registered after the layer, skipping normalization layers and
    identities; the first other module is the consumer. It must be an activation or carry
    ``stat_name`` statistics.

    Raises:
        ConfigError: the layer is not a module of the model, or no activation follows it.
    """
    leaves = [(normalize_module_name(n), m) for n, m in model.named_modules() if n and not any(m.children())]
    names = [n for n, _ in leaves]
    if layer_name not in names:
        raise ConfigError(f"The model has no layer {layer_name!r}.{did_you_mean(layer_name, names)}")
    for name, module in leaves[names.index(layer_name) + 1 :]:
        if isinstance(module, _TRANSPARENT):
            continue
        if isinstance(module, ACTIVATION_CLASSES) or module_activation_stats(module, stat_name) is not None:
            return name, module
        raise ConfigError(
            f"The module registered after {layer_name!r} (skipping normalization) is {name!r} "
            f"({type(module).__name__}), not an activation. Name the activation that consumes the layer's output "
            f"with activation_modules: {{{layer_name}: <module name>}}."
        )
    raise ConfigError(
        f"No module is registered after {layer_name!r}; name its activation with activation_modules: "
        f"{{{layer_name}: <module name>}}."
    )


class ActivationRankedFilterPruner(RankedStructurePruner):
    """Base class: rank filters by a per-channel statistic of the layer's activation.

    Subclasses set :attr:`activation_rank_criterion` (the collector's statistic name) and
    :meth:`importance` (statistic -> score, higher = keep).

    Args:
        name: instance name.
        group_type: ``Filters`` or ``3D``.
        desired_sparsity: fraction of filters to prune.
        weights: the layers' weights.
        group_dependency: ``"Leader"`` to prune every listed tensor like the first one.
        activation_modules: ``{layer or weight name: activation module name}`` for layers whose
            activation is not the next module registered after them.
    """

    supported_groups = ("3D", "Filters")
    activation_rank_criterion: str = ""

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        activation_modules: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(name, group_type, desired_sparsity, weights, group_dependency)
        self.activation_modules = {
            normalize_module_name(k): normalize_module_name(v) for k, v in (activation_modules or {}).items()
        }

    def importance(self, stats: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def activation_module(self, model: nn.Module, param_name: str) -> tuple[str, nn.Module]:
        """The module whose statistics rank ``param_name``'s filters."""
        layer = param_name.rpartition(".")[0]
        explicit = self.activation_modules.get(param_name) or self.activation_modules.get(layer)
        if explicit is None:
            return consumer_activation(model, layer, self.activation_rank_criterion)
        modules = {normalize_module_name(n): m for n, m in model.named_modules()}
        if explicit not in modules:
            raise ConfigError(
                f"activation_modules maps {layer!r} to {explicit!r}, which the model does not have."
                f"{did_you_mean(explicit, list(modules))}"
            )
        return explicit, modules[explicit]

    def scores(self, param, param_name, meta):
        model = (meta or {}).get("model")
        if model is None:
            raise ConfigError(f"{type(self).__name__} needs meta['model'] to find the activation statistics.")
        module_name, module = self.activation_module(model, param_name)
        stats = module_activation_stats(module, self.activation_rank_criterion)
        if stats is None:
            raise ConfigError(
                f"No {self.activation_rank_criterion!r} statistics at {module_name!r} (the activation of "
                f"{param_name!r}). Collect them first: with SummaryActivationStatsCollector(model, "
                f"{self.activation_rank_criterion!r}): <run some batches>."
            )
        if stats.numel() != param.shape[0]:
            raise ConfigError(
                f"{module_name!r} recorded {stats.numel()} channels but {param_name!r} has {param.shape[0]} filters; "
                "the statistics belong to another layer. Use activation_modules to name the right activation."
            )
        return self.importance(stats.reshape(-1).to(param.device))


@register_pruner
class ActivationAPoZRankedFilterPruner(ActivationRankedFilterPruner):
    """Prune the filters whose activations are most often zero (Network Trimming, Hu et al. 2016)."""

    activation_rank_criterion = "apoz_channels"

    def importance(self, stats: torch.Tensor) -> torch.Tensor:
        return -stats


@register_pruner
class ActivationMeanRankedFilterPruner(ActivationRankedFilterPruner):
    """Prune the filters with the lowest mean activation (Molchanov et al. 2017).

    The original sorted this statistic like APoZ and so pruned the filters with the *highest*
    mean activation; here low mean activation means low importance, as in the paper.
    """

    activation_rank_criterion = "mean_channels"

    def importance(self, stats: torch.Tensor) -> torch.Tensor:
        return stats
