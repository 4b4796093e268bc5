"""Pure mask functions: ``(tensor, target, granularity, ...) -> mask``.

No state, no side effects: a pruner composes one of these with a rate schedule (the target) and
a granularity. Masks are returned in the tensor's dtype and device, 1 = keep, 0 = prune, so they
can be multiplied into the parameter in place.

Selections are by index, not by comparing with a threshold value, so that the number of pruned
elements or structures is exact even when magnitudes tie (the original's top-k threshold
pruned every element equal to the k-th smallest, i.e. too many on tensors with repeated values).
Ties are broken by position (a stable sort), so results are deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from distiller.distributed.rng import same_on_all_ranks
from distiller.errors import ConfigError
from distiller.sparsity.granularity import NM, Granularity, NormSpec, granularity_from_name

__all__ = [
    "threshold_mask",
    "level_mask",
    "sensitivity_mask",
    "num_structs_to_prune",
    "e_greedy_normal_noise",
    "structure_level_binary_map",
    "structure_level_mask",
    "structure_threshold_binary_map",
    "structure_threshold_mask",
    "nm_mask",
    "bottom_k_keep_map",
]


def _check_fraction(value: float, what: str) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise ConfigError(f"{what} must be a fraction in [0, 1]; got {value}.")
    return value


def threshold_mask(t: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """Keep the elements whose magnitude is strictly above ``threshold``."""
    with torch.no_grad():
        return torch.gt(t.detach().abs(), threshold).to(t.dtype)


def bottom_k_keep_map(scores: torch.Tensor, k: int) -> torch.Tensor:
    """A 0/1 map of ``scores``'s shape that drops exactly the ``k`` smallest entries.

    Ties are resolved by position (earlier entries are dropped first).
    """
    flat = scores.reshape(-1)
    keep = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        order = torch.sort(flat, stable=True).indices
        keep[order[:k]] = False
    return keep.reshape(scores.shape)


def level_mask(t: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune exactly ``round(sparsity * numel)`` smallest-magnitude elements.

    Raises:
        ConfigError: ``sparsity`` outside [0, 1].
    """
    sparsity = _check_fraction(sparsity, "sparsity")
    with torch.no_grad():
        k = int(round(sparsity * t.numel()))
        return bottom_k_keep_map(t.detach().abs(), k).to(t.dtype)


def sensitivity_mask(t: torch.Tensor, sensitivity: float, std: float | None = None) -> torch.Tensor:
    """Keep ``|w| > sensitivity * std`` (Han et al., "Learning both Weights and Connections").

    Args:
        t: the tensor.
        sensitivity: the multiplier ``s``.
        std: the standard deviation to use. Pass the value measured on the *dense* weights
            (the original measured it once, on first use): re-measuring on a pruned tensor
            moves the threshold every time.
    """
    with torch.no_grad():
        if std is None:
            std = t.detach().std().item()
        return threshold_mask(t, float(sensitivity) * float(std))


def num_structs_to_prune(
    n_structs: int, group_len: int, fraction: float, rounding_fn: Callable[[float], float] = math.floor
) -> int:
    """How many of ``n_structs`` structures to prune for ``fraction``, in multiples of ``group_len``.

    Never all of them unless ``fraction == 1.0``: a layer with every structure pruned is
    disconnected, almost always a schedule mistake rather than the intent.
    """
    n = rounding_fn(fraction * n_structs)
    n = int(rounding_fn(n / group_len) * group_len)
    if n >= n_structs and fraction != 1.0:
        n = n_structs - group_len
    return max(int(n), 0)


def e_greedy_normal_noise(
    scores: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ε-greedy exploration: with probability ``epsilon``, scores times standard-normal noise.

    The original's ranking noise: most of the time rank by magnitude, sometimes by a random
    perturbation of it.
    """
    if not epsilon:
        return scores
    # Rank 0's coin and noise on every rank of a distributed run, so the masks agree.
    coin = same_on_all_ranks(torch.rand((), generator=generator)).item()
    if coin <= epsilon:
        noise = same_on_all_ranks(torch.randn(scores.shape, generator=generator, dtype=scores.dtype))
        noise = noise.to(scores.device)
        return scores * noise
    return scores


def structure_level_binary_map(
    t: torch.Tensor,
    fraction: float,
    granularity: Granularity | str,
    p: NormSpec = 1,
    noise: float = 0.0,
    rounding_fn: Callable[[float], float] = math.floor,
    generator: torch.Generator | None = None,
    group_len: int = 1,
    length_normalized: bool = True,
    scores: torch.Tensor | None = None,
) -> torch.Tensor:
    """One 0/1 value per structure: the bottom ``fraction`` by norm (or by ``scores``) is 0.

    Args:
        t: the tensor to rank.
        fraction: fraction of structures to prune.
        granularity: a :class:`Granularity` or its name.
        p: norm for ranking (1, 2, or ``"max"``).
        noise: ε of :func:`e_greedy_normal_noise`.
        rounding_fn: rounding of the structure count (the original's ``rounding_fn``).
        generator: random source for ``noise``.
        group_len: adjacent structures ranked and pruned together.
        length_normalized: rank by norm / group size (does not change the order within one
            tensor; kept for parity with the original's reported magnitudes).
        scores: rank by these values (one per structure group) instead of norms, for
            activation-, gradient- or random-ranked pruners.

    Returns:
        A tensor of ``n_structures`` values (one per structure; with ``group_len`` each value
        is repeated for the structures of its group), in ``t``'s dtype.
    """
    fraction = _check_fraction(fraction, "fraction to prune")
    g = granularity_from_name(granularity)
    n_structs = g.num_structures(t.shape)
    with torch.no_grad():
        if scores is None:
            scores = g.group_norms(t, p=p, length_normalized=length_normalized, group_len=group_len)
        n_groups = scores.numel()
        k = num_structs_to_prune(n_structs, group_len, fraction, rounding_fn) // group_len
        scores = e_greedy_normal_noise(scores.reshape(-1).float(), noise, generator)
        keep = bottom_k_keep_map(scores, min(k, n_groups)).to(t.dtype)
        if group_len != 1:
            keep = keep.repeat_interleave(group_len)
        return keep


def structure_level_mask(
    t: torch.Tensor,
    fraction: float,
    granularity: Granularity | str,
    p: NormSpec = 1,
    noise: float = 0.0,
    rounding_fn: Callable[[float], float] = math.floor,
    generator: torch.Generator | None = None,
    group_len: int = 1,
    length_normalized: bool = True,
) -> torch.Tensor:
    """A full mask pruning the bottom ``fraction`` of structures by Lp norm.

    See :func:`structure_level_binary_map` for the arguments; the map is expanded with
    :meth:`Granularity.expand`.
    """
    g = granularity_from_name(granularity)
    keep = structure_level_binary_map(t, fraction, g, p, noise, rounding_fn, generator, group_len, length_normalized)
    return g.expand(keep, t.shape)


def structure_threshold_binary_map(
    t: torch.Tensor,
    threshold: float | torch.Tensor,
    granularity: Granularity | str,
    p: NormSpec = 1,
    length_normalized: bool = False,
    group_len: int = 1,
) -> torch.Tensor:
    """One 0/1 value per structure (group): 1 where its norm is strictly above ``threshold``."""
    g = granularity_from_name(granularity)
    if isinstance(threshold, torch.Tensor):
        threshold = threshold.item()
    norms = g.group_norms(t, p=p, length_normalized=length_normalized, group_len=group_len)
    keep = norms.gt(threshold).to(t.dtype)
    if group_len != 1:
        keep = keep.repeat_interleave(group_len)
    return keep


def structure_threshold_mask(
    t: torch.Tensor,
    threshold: float | torch.Tensor,
    granularity: Granularity | str,
    p: NormSpec = 1,
    length_normalized: bool = False,
    group_len: int = 1,
) -> torch.Tensor:
    """A full mask keeping the structures whose norm is strictly above ``threshold``."""
    g = granularity_from_name(granularity)
    keep = structure_threshold_binary_map(t, threshold, g, p, length_normalized, group_len)
    return g.expand(keep, t.shape)


def nm_mask(t: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest magnitudes of every ``m`` consecutive weights along dim 1.

    The 2:4 pattern of sparse tensor cores is ``nm_mask(w, 2, 4)``. Within a group, ties keep
    the earlier position. See :class:`~distiller.sparsity.granularity.NM` for the layout.
    """
    g = NM(n, m)
    with torch.no_grad():
        groups = g.group_view(t.detach()).abs()
        keep = torch.zeros_like(groups, dtype=t.dtype)
        if n:
            # Stable descending order: among equal magnitudes the first position wins.
            order = torch.sort(groups, dim=1, descending=True, stable=True).indices[:, :n]
            keep.scatter_(1, order, 1.0)
        return g._from_groups(keep, t.shape).contiguous()
