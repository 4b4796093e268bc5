"""Channel pruning with feature-map reconstruction (He et al. 2017; AMC, He et al. 2018).

Removing input channels of a layer changes its output. Instead of just zeroing the channels,
re-fit the remaining weights so that the layer reproduces, as well as it can in the least-squares
sense, the outputs it computed before pruning: ``min_W' || X_kept W'^T - Y ||``, where ``X_kept``
are input patches restricted to the kept channels and ``Y`` the original outputs, both sampled
from a few batches of data.

Usage::

    pruner = FMReconstructionChannelPruner("fm", "Channels", 0.5, ["layer1.0.conv2.weight"])
    pruner.collect_feature_maps(model, batches)      # or feature_maps=collect_feature_maps(...)
    masks = distiller.pruning.prune(model, pruner)

The samples are taken once, from the model as it is at collection time (the "teacher" outputs);
collect again to reconstruct against a different model. The original used scikit-learn's
``LinearRegression``; ``torch.linalg.lstsq`` solves the same problem without the dependency.
Only ungrouped convolutions (with numeric padding) and Linear layers are supported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.pruning.base import register_pruner
from distiller.pruning.ranked import RankedStructurePruner, norm_spec
from distiller.registry import did_you_mean

__all__ = ["FMReconstructionChannelPruner", "FeatureMapSamples", "collect_feature_maps"]


@dataclass
class FeatureMapSamples:
    """Sampled input patches and outputs of one layer.

    Attributes:
        inputs: ``(samples, in_channels, kernel_volume)`` -- an input patch per sampled output
            position (``kernel_volume`` is 1 for a Linear layer).
        outputs: ``(samples, out_channels)`` -- the layer's output there, bias removed.
    """

    inputs: torch.Tensor
    outputs: torch.Tensor


def _check_layer(name: str, module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        return
    if not isinstance(module, nn.Conv2d):
        raise ConfigError(
            f"Feature-map reconstruction supports Conv2d and Linear layers; {name!r} is a {type(module).__name__}."
        )
    if module.groups != 1 or isinstance(module.padding, str) or module.padding_mode != "zeros":
        raise ConfigError(
            f"Feature-map reconstruction supports ungrouped Conv2d with numeric zero padding; {name!r} has "
            f"groups={module.groups}, padding={module.padding!r}, padding_mode={module.padding_mode!r}."
        )


def _sample(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, n_points: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(inputs, outputs)`` samples of one batch (see :class:`FeatureMapSamples`)."""
    bias = module.bias.detach() if module.bias is not None else None
    if isinstance(module, nn.Linear):
        inputs = x.reshape(-1, x.shape[-1], 1)
        outputs = y.reshape(-1, y.shape[-1])
    else:
        patches = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, C*K, L)
        positions = torch.randint(patches.shape[-1], (n_points,), generator=generator).to(x.device)
        k = math.prod(module.kernel_size)
        inputs = patches[:, :, positions].permute(0, 2, 1).reshape(-1, x.shape[1], k)
        outputs = y.flatten(2)[:, :, positions].permute(0, 2, 1).reshape(-1, y.shape[1])
    if bias is not None:
        outputs = outputs - bias
    return inputs.detach().cpu(), outputs.detach().cpu()


def _batch_inputs(batch: Any) -> Any:
    """The model input of a batch: the batch itself, or the first item of an ``(inputs, targets)`` pair."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def collect_feature_maps(
    model: nn.Module,
    data: Iterable[Any],
    layer_names: Iterable[str],
    *,
    n_points_per_fm: int = 10,
    max_batches: int | None = None,
    forward_fn: Callable[[nn.Module, Any], Any] | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, FeatureMapSamples]:
    """Sample input patches and outputs of ``layer_names`` while ``model`` runs on ``data``.

    Args:
        model: the model (run in its current train/eval mode, without gradients).
        data: batches: tensors or ``(inputs, targets)`` pairs (a DataLoader works).
        layer_names: the Conv2d/Linear modules to sample (canonical or ``module.`` names).
        n_points_per_fm: output positions sampled per conv feature map and batch.
        max_batches: stop after this many batches.
        forward_fn: ``forward_fn(model, batch)`` for models whose batches are not plain inputs.
        generator: random source for the sampled positions.

    Returns:
        ``{layer name: FeatureMapSamples}``.
    """
    modules = {normalize_module_name(n): m for n, m in model.named_modules()}
    wanted = {}
    for name in layer_names:
        key = normalize_module_name(name)
        if key not in modules:
            raise ConfigError(f"The model has no layer {name!r}.{did_you_mean(key, list(modules))}")
        _check_layer(key, modules[key])
        wanted[key] = modules[key]
    cache: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in wanted}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            cache[name].append(_sample(module, inputs[0], output, n_points_per_fm, generator))

        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in wanted.items()]
    try:
        with torch.no_grad():
            for i, batch in enumerate(data):
                if max_batches is not None and i >= max_batches:
                    break
                if forward_fn is not None:
                    forward_fn(model, batch)
                else:
                    model(_batch_inputs(batch))
    finally:
        for h in handles:
            h.remove()
    empty = [n for n, samples in cache.items() if not samples]
    if empty:
        raise ConfigError(f"No data reached {', '.join(map(repr, empty))} while collecting feature maps.")
    return {
        n: FeatureMapSamples(torch.cat([s[0] for s in samples]), torch.cat([s[1] for s in samples]))
        for n, samples in cache.items()
    }


@register_pruner
class FMReconstructionChannelPruner(RankedStructurePruner):
    """Prune input channels by L1 rank, then re-fit the kept weights by least squares.

    Args:
        name: instance name.
        group_type: ``Channels`` (input channels of a conv, columns of a Linear weight).
        desired_sparsity: fraction of channels to prune.
        weights: the layers' weights.
        group_dependency: not supported (each layer is re-fitted on its own data).
        kwargs: unused (the original's signature).
        magnitude_fn: ranking norm (``'L1'`` by default, ``'L2'``, ``'Max'``).
        group_size: adjacent channels ranked and pruned together.
        rounding_fn: rounding of the channel count.
        ranking_noise: ε-greedy ranking noise.
        feature_maps: ``{layer name: FeatureMapSamples}`` from :func:`collect_feature_maps`; or
            call :meth:`collect_feature_maps` before pruning.
    """

    supported_groups = ("Channels",)

    def __init__(
        self,
        name: str,
        group_type: str,
        desired_sparsity: float,
        weights: str | Iterable[str],
        group_dependency: str | None = None,
        kwargs: Mapping[str, Any] | None = None,
        magnitude_fn: Any = None,
        group_size: int = 1,
        rounding_fn: Callable[[float], float] | str = math.floor,
        ranking_noise: float = 0.0,
        feature_maps: Mapping[str, FeatureMapSamples] | None = None,
    ) -> None:
        if group_dependency is not None:
            raise ConfigError(
                f"FMReconstructionChannelPruner {name!r} re-fits every layer on its own data; "
                "group_dependency is not supported."
            )
        super().__init__(name, group_type, desired_sparsity, weights, None, group_size, rounding_fn, ranking_noise)
        self.p = norm_spec(magnitude_fn)
        self.feature_maps: dict[str, FeatureMapSamples] = {
            normalize_module_name(k): v for k, v in (feature_maps or {}).items()
        }

    def layer_names(self) -> list[str]:
        """The modules whose weights this pruner re-fits."""
        return [n.rpartition(".")[0] for n in self.params_names or []]

    def collect_feature_maps(
        self, model: nn.Module, data: Iterable[Any], **kwargs: Any
    ) -> FMReconstructionChannelPruner:
        """Sample the feature maps of every listed layer (see :func:`collect_feature_maps`)."""
        self.feature_maps.update(collect_feature_maps(model, data, self.layer_names(), **kwargs))
        return self

    def make_mask(self, param, param_name, target, current_mask, meta):
        keep = self.keep_map(param, param_name, target, meta)
        if keep is None:
            return None
        self.reconstruct(param, param_name, keep.bool())
        return self.mask_from_keep_map(keep, param)

    def reconstruct(self, param: torch.Tensor, param_name: str, keep: torch.Tensor) -> None:
        """Overwrite the kept channels of ``param`` with the least-squares fit to the cached outputs."""
        layer = param_name.rpartition(".")[0]
        samples = self.feature_maps.get(layer)
        if samples is None:
            raise ConfigError(
                f"FMReconstructionChannelPruner {self.name!r} has no feature maps for {layer!r}; call "
                "pruner.collect_feature_maps(model, batches) first (or pass feature_maps=...)."
            )
        if samples.inputs.shape[1] != param.shape[1] or samples.outputs.shape[1] != param.shape[0]:
            raise ConfigError(f"The feature maps cached for {layer!r} do not match {param_name!r}'s shape.")
        kept = keep.nonzero().reshape(-1).cpu()
        x = samples.inputs[:, kept].reshape(samples.inputs.shape[0], -1).double()
        y = samples.outputs.double()
        solution = torch.linalg.lstsq(x, y, driver="gelsd").solution  # (kept * kernel_volume, out)
        new_w = solution.t().reshape(param.shape[0], kept.numel(), *param.shape[2:])
        with torch.no_grad():
            param[:, kept.to(param.device)] = new_w.to(dtype=param.dtype, device=param.device)
