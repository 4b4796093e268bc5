"""From an agent's action to a number of channels, and the ``mac-constrained`` clamp.

The agent acts in ``[-1, 1]`` (the scale stable-baselines3's DDPG, TD3 and PPO squash or clip to);
:func:`scale_action` maps that linearly onto ``--amc-action-range [low, high]``, the fraction of a
group's channels to remove. :func:`removal_count` turns a fraction into a channel count, and
``--amc-group-size`` rounds the number of *kept* channels up to a multiple of the group size (hardware
likes channel counts in multiples of 8 or 16), never keeping fewer than one channel.

The clamp (``mac-constrained``)
-------------------------------
Let ``M(r)`` be the network's MACs when step ``i`` removes ``r[i]`` channels
(:class:`~distiller.amc.macs.MacModel`), ``R[i]`` the most step ``i`` may remove (the action range's
upper end), and ``T = target_density * M(0)`` the budget. ``M`` never grows when a count grows: a
layer's MACs are proportional to its kept rows times its kept columns.

*Invariant* before step ``t``: ``M(r[0..t-1], R[t], ..., R[T-1]) <= T`` -- if every remaining step
removed as much as it may, the budget would be met.

* Before the first step the invariant says ``M(R) <= T``; :func:`check_reachable` refuses a target
  that the action range cannot reach, before any episode runs.
* At step ``t`` the agent proposes ``p``. The clamp returns the *smallest* allowed count
  ``c >= p`` with ``M(r[0..t-1], c, R[t+1], ..., R[T-1]) <= T``. Such a ``c`` exists, since ``c =
  R[t]`` satisfies it by the invariant; and the choice re-establishes the invariant for step
  ``t + 1``. Because ``M`` is monotone the smallest ``c`` is found by bisection.
* After the last step there are no remaining steps, so the invariant reads ``M(r) <= T``: every
  episode meets the target, whatever the agent does, and the agent's choice is changed only when
  it would make the target unreachable.

The original computed the clamp with a linear estimate (``duty = target_reduction - (reduced +
rest * a_max)``), which ignores that a layer shrinks with both its input and its output channels;
the bilinear count above is exact, so the guarantee holds to the MAC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from distiller.amc.macs import MacModel
from distiller.errors import ConfigError

__all__ = [
    "allowed_counts",
    "check_action_range",
    "check_reachable",
    "clamp_to_target",
    "removal_count",
    "scale_action",
]


def check_action_range(low: float, high: float) -> tuple[float, float]:
    """Validate ``--amc-action-range``: ``0 <= low <= high < 1`` (removing every channel is not an action)."""
    if not (0.0 <= low <= high < 1.0):
        raise ConfigError(
            f"--amc-action-range takes two fractions of channels to remove, 0 <= LOW <= HIGH < 1; got {low} {high}. "
            "The original's default is 0.0 0.8."
        )
    return float(low), float(high)


def scale_action(x: float, low: float, high: float) -> float:
    """Map an agent's ``x`` in ``[-1, 1]`` (clipped) linearly onto ``[low, high]``."""
    x = min(max(float(x), -1.0), 1.0)
    return low + (x + 1.0) / 2.0 * (high - low)


def removal_count(fraction: float, num_channels: int, group_size: int = 1) -> int:
    """Channels removed for ``fraction``: ``floor(fraction * channels)``, at most ``channels - 1``; with a
    group size, the kept count is rounded up to a multiple of it (or to all channels)."""
    removed = min(math.floor(fraction * num_channels + 1e-9), num_channels - 1)
    removed = max(removed, 0)
    if group_size > 1:
        kept = num_channels - removed
        kept = min(num_channels, math.ceil(kept / group_size) * group_size)
        removed = num_channels - kept
    return removed


def allowed_counts(num_channels: int, group_size: int, low: int, high: int) -> list[int]:
    """The removal counts in ``[low, high]`` that :func:`removal_count` can produce, ascending."""

    def kept_ok(kept: int) -> bool:
        return group_size <= 1 or kept == num_channels or kept % group_size == 0

    return [c for c in range(low, min(high, num_channels - 1) + 1) if kept_ok(num_channels - c)]


def check_reachable(mac_model: MacModel, max_counts: Sequence[int], target_density: float) -> None:
    """Refuse a MACs target that even the largest actions cannot reach.

    Raises:
        ConfigError: naming ``--amc-target-density`` and ``--amc-action-range``, with the reachable density.
    """
    dense = mac_model.dense_macs
    best = mac_model.macs(max_counts)
    if best > target_density * dense:
        raise ConfigError(
            f"--amc-target-density {target_density:g} cannot be reached: removing the most that --amc-action-range "
            f"allows from every layer leaves {best / dense:.4f} of the MACs ({best:,} of {dense:,}). Raise the upper "
            "end of --amc-action-range, lower --amc-group-size, or ask for a larger density."
        )


def clamp_to_target(
    mac_model: MacModel,
    removed: Sequence[int],
    step: int,
    candidates: Sequence[int],
    max_counts: Sequence[int],
    target_macs: float,
) -> int:
    """The smallest of ``candidates`` (ascending removal counts for ``step``, starting at the agent's
    proposal) that keeps the target reachable, given ``removed[:step]`` done and ``max_counts`` for the
    later steps. Returns the largest candidate if none does (the invariant then was already broken)."""

    def fits(count: int) -> bool:
        plan = [*removed[:step], count, *max_counts[step + 1 :]]
        return mac_model.macs(plan) <= target_macs

    lo, hi = 0, len(candidates) - 1
    if hi < 0:
        raise ValueError("no candidate counts")
    if not fits(candidates[hi]):
        return candidates[hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            hi = mid
        else:
            lo = mid + 1
    return candidates[lo]
