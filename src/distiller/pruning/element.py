"""Element-wise (fine-grained) pruners.

Each class is one criterion of :mod:`distiller.sparsity.criteria` (threshold, level,
sensitivity, N:M) bound to one rate (:mod:`distiller.pruning.rates`), under the original
Distiller's class name and constructor arguments so YAML schedules keep working.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from distiller.errors import ConfigError
from distiller.pruning.base import Pruner, RoundCache, find_parameter, register_pruner
from distiller.pruning.rates import BaiduRate, ConstantRate, PerParamRate, check_fraction, linear_growth
from distiller.sparsity.criteria import bottom_k_keep_map, level_mask, nm_mask, sensitivity_mask, threshold_mask
from distiller.sparsity.granularity import NM

__all__ = [
    "level_mask_or_none",
    "BaiduRNNPruner",
    "GlobalMagnitudePruner",
    "MagnitudeParameterPruner",
    "NMPruner",
    "SensitivityPruner",
    "SparsityLevelParameterPruner",
    "SplicingPruner",
]


def level_mask_or_none(param: torch.Tensor, sparsity: float) -> torch.Tensor | None:
    """:func:`~distiller.sparsity.criteria.level_mask`, or ``None`` (mask unchanged) at level 0, as in the original."""
    return None if sparsity == 0 else level_mask(param, sparsity)


@register_pruner
class MagnitudeParameterPruner(Pruner):
    """Prune every weight whose magnitude is at most a per-parameter threshold.

    Args:
        name: instance name.
        thresholds: ``{param_name: threshold}``; the ``'*'`` default is mandatory (as in the
            original) and applies to *every* other parameter, biases included.
    """

    def __init__(self, name: str, thresholds: Mapping[str, float]) -> None:
        super().__init__(name)
        if not isinstance(thresholds, Mapping) or "*" not in thresholds:
            raise ConfigError(
                f"MagnitudeParameterPruner {name!r}: thresholds must be a mapping with a '*' default threshold, "
                "e.g. thresholds: {'*': 0.01, conv1.weight: 0.02}."
            )
        self.thresholds = thresholds
        self.rate = PerParamRate(thresholds, "thresholds")

    def make_mask(self, param, param_name, target, current_mask, meta):
        return threshold_mask(param, target)


@register_pruner
class SparsityLevelParameterPruner(Pruner):
    """Prune an exact fraction of each parameter's smallest-magnitude weights.

    Args:
        name: instance name.
        levels: ``{param_name: sparsity}`` with an optional ``'*'`` default. A ``PruningPolicy``
            may replace it (its ``levels`` argument), as in the original.
    """

    def __init__(self, name: str, levels: Mapping[str, float]) -> None:
        super().__init__(name)
        self.levels = levels

    @property
    def levels(self) -> Mapping[str, float]:
        return self._levels

    @levels.setter
    def levels(self, levels: Mapping[str, float]) -> None:
        self.rate = PerParamRate(levels, "levels")
        for key, value in self.rate.values.items():
            check_fraction(value, f"levels[{key!r}]")
        self._levels = levels

    def make_mask(self, param, param_name, target, current_mask, meta):
        return level_mask_or_none(param, target)


class _StdCache:
    """Statistics of a parameter measured once, on its first pruning, and kept in the state dict.

    Threshold pruners (Han et al.) set the threshold from the *dense* weights' spread; measuring it
    again on an already pruned tensor would move the threshold every epoch. The original cached
    the value on the tensor object itself, which a checkpoint lost.
    """

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def get(self, name: str, param: torch.Tensor, measure) -> list[float]:
        if name not in self.values:
            with torch.no_grad():
                self.values[name] = [float(v) for v in measure(param.detach())]
        return self.values[name]


@register_pruner
class SensitivityPruner(Pruner):
    """Prune ``|w| <= s * std(w)`` with a per-parameter sensitivity ``s`` (Han et al. 2015).

    The standard deviation is measured on the first call for each parameter and kept (also in
    :meth:`state_dict`), so the threshold does not chase the pruned weights.

    Args:
        name: instance name.
        sensitivities: ``{param_name: s}`` with an optional ``'*'`` default.
    """

    def __init__(self, name: str, sensitivities: Mapping[str, float]) -> None:
        super().__init__(name)
        self.sensitivities = sensitivities
        self.rate = PerParamRate(sensitivities, "sensitivities")
        self._stds = _StdCache()

    def make_mask(self, param, param_name, target, current_mask, meta):
        (std,) = self._stds.get(param_name, param, lambda t: [t.std()])
        return sensitivity_mask(param, target, std=std)

    def state_dict(self) -> dict[str, Any]:
        return {"stds": {k: v[0] for k, v in self._stds.values.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._stds.values = {k: [float(v)] for k, v in state.get("stds", {}).items()}


@register_pruner
class SplicingPruner(Pruner):
    """Dynamic Network Surgery (Guo et al. 2016): prune *and* splice back.

    With ``t = mean|w| + s * std|w|`` (of the dense weights, measured once), a weight's mask
    becomes 0 when ``|w| < low_thresh_mult * t``, 1 when ``|w| >= hi_thresh_mult * t``, and keeps
    its previous value in between, so weights that grow back are re-enabled. Use it with soft
    pruning (``mask_on_forward_only``) so masked weights keep training.

    Args:
        name: instance name.
        sensitivities: ``{param_name: s}`` with an optional ``'*'`` default.
        low_thresh_mult: multiplier of the pruning threshold.
        hi_thresh_mult: multiplier of the splicing threshold.
        sensitivity_multiplier: when > 0, ``s`` grows linearly each epoch of the window:
            ``s * ((epoch - start) * multiplier + 1)``.
    """

    def __init__(
        self,
        name: str,
        sensitivities: Mapping[str, float],
        low_thresh_mult: float,
        hi_thresh_mult: float,
        sensitivity_multiplier: float = 0,
    ) -> None:
        super().__init__(name)
        if low_thresh_mult > hi_thresh_mult:
            raise ConfigError(
                f"SplicingPruner {name!r}: low_thresh_mult ({low_thresh_mult}) must not exceed hi_thresh_mult "
                f"({hi_thresh_mult})."
            )
        self.sensitivities = sensitivities
        self.low_thresh_mult = low_thresh_mult
        self.hi_thresh_mult = hi_thresh_mult
        self.sensitivity_multiplier = sensitivity_multiplier
        self.rate = PerParamRate(sensitivities, "sensitivities")
        self._stats = _StdCache()

    def target(self, param_name, meta):
        sensitivity = self.rate(param_name, meta)
        if sensitivity is None or self.sensitivity_multiplier <= 0:
            return sensitivity
        meta = meta or {}
        return linear_growth(
            sensitivity, self.sensitivity_multiplier, meta.get("current_epoch", 0), meta.get("starting_epoch", 0)
        )

    def make_mask(self, param, param_name, target, current_mask, meta):
        mean, std = self._stats.get(param_name, param, lambda t: [t.abs().mean(), t.abs().std()])
        base = mean + std * target
        with torch.no_grad():
            magnitude = param.detach().abs()
            mask = torch.ones_like(param) if current_mask is None else current_mask.clone()
            mask[magnitude < base * self.low_thresh_mult] = 0
            mask[magnitude >= base * self.hi_thresh_mult] = 1
            return mask

    def state_dict(self) -> dict[str, Any]:
        return {"stats": {k: list(v) for k, v in self._stats.values.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._stats.values = {k: [float(x) for x in v] for k, v in state.get("stats", {}).items()}


@register_pruner
class BaiduRNNPruner(Pruner):
    """Gradual threshold pruning for RNNs (Narang et al. 2017) on a linear-then-steeper ramp.

    See :func:`distiller.pruning.rates.baidu_threshold`. Per epoch, as in the original, or per
    step when the policy is scheduled in steps.

    Args:
        name: instance name.
        q: the threshold the ramp reaches (the paper's 90th percentile of |w|).
        ramp_epoch_offset: epochs after ``starting_epoch`` at which the slope steepens.
        ramp_slope_mult: how much steeper.
        weights: the parameters to prune.
    """

    def __init__(
        self, name: str, q: float, ramp_epoch_offset: int, ramp_slope_mult: float, weights: str | Iterable[str]
    ) -> None:
        super().__init__(name, weights)
        self.q = q
        self.ramp_epoch_offset = ramp_epoch_offset
        self.ramp_slope_mult = ramp_slope_mult
        self.rate = BaiduRate(q, ramp_epoch_offset, ramp_slope_mult)

    def make_mask(self, param, param_name, target, current_mask, meta):
        return threshold_mask(param, target)


@register_pruner
class NMPruner(Pruner):
    """N:M semi-structured pruning: keep the ``n`` largest of every ``m`` weights (e.g. 2:4).

    Groups run along the input dimension (see :class:`~distiller.sparsity.granularity.NM`), the
    layout sparse tensor cores accelerate. New in this re-implementation.

    Args:
        name: instance name.
        n: weights kept per group.
        m: group size.
        weights: the parameters to prune.
    """

    def __init__(self, name: str, n: int, m: int, weights: str | Iterable[str]) -> None:
        super().__init__(name, weights)
        self.granularity = NM(n, m)  # validates n and m
        self.n, self.m = n, m
        self.rate = ConstantRate(1.0 - n / m)

    def make_mask(self, param, param_name, target, current_mask, meta):
        return nm_mask(param, self.n, self.m)


@register_pruner
class GlobalMagnitudePruner(Pruner):
    """One magnitude threshold across all listed tensors, reaching a global ``sparsity``.

    Layers with many small weights lose more than layers with few; the total count of pruned
    weights is exactly ``round(sparsity * total)``. The selection is computed once per round
    from the current weights of all listed tensors (read from ``meta['model']``), so every
    tensor is cut by the same threshold. New in this re-implementation.

    Args:
        name: instance name.
        sparsity: the global fraction of the listed weights to prune.
        weights: the parameters that share the threshold.
    """

    def __init__(self, name: str, sparsity: float, weights: str | Iterable[str]) -> None:
        super().__init__(name, weights)
        self.sparsity = check_fraction(sparsity, "sparsity")
        self.rate = ConstantRate(self.sparsity)
        self._round = RoundCache()

    def make_mask(self, param, param_name, target, current_mask, meta):
        self._round.visit(param_name)
        model = (meta or {}).get("model")
        masks = self._round.get(lambda: self.global_masks(model, target))
        return masks[param_name].to(dtype=param.dtype, device=param.device)

    def global_masks(self, model: torch.nn.Module | None, sparsity: float) -> dict[str, torch.Tensor]:
        """``{name: mask}`` pruning the ``sparsity`` smallest magnitudes of all listed tensors together."""
        assert self.params_names is not None
        tensors = [find_parameter(model, n).detach() for n in self.params_names]
        with torch.no_grad():
            flat = torch.cat([t.abs().reshape(-1).float().cpu() for t in tensors])
            keep = bottom_k_keep_map(flat, int(round(sparsity * flat.numel())))
            out, offset = {}, 0
            for n, t in zip(self.params_names, tensors):
                out[n] = keep[offset : offset + t.numel()].reshape(t.shape)
                offset += t.numel()
        return out

    def threshold(self, model: torch.nn.Module) -> float:
        """The shared threshold: the largest pruned magnitude (0 when nothing is pruned)."""
        masks = self.global_masks(model, self.sparsity)
        pruned = [find_parameter(model, n).detach().abs()[m == 0] for n, m in masks.items()]
        values = torch.cat([p.reshape(-1).float().cpu() for p in pruned])
        return float(values.max()) if values.numel() else 0.0
