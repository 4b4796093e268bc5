"""Fixed policies to compare an AMC search against: the same fraction for every layer group.

The question an AMC search must answer is whether learned per-layer ratios beat the obvious choice,
pruning every layer by the same fraction until the network fits the MACs budget ("uniform L1
pruning"). :func:`uniform_fraction` finds the smallest such fraction, and :func:`play_fractions`
runs any fixed per-step fractions through an environment, so both networks are pruned, thinned and
scored by exactly the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

from distiller.amc.actions import removal_count
from distiller.amc.environment import AMCEnv, EpisodeOutcome
from distiller.errors import ConfigError

__all__ = ["action_for_fraction", "play_fractions", "uniform_fraction"]


def uniform_fraction(env: AMCEnv, target_density: float) -> float:
    """The smallest fraction ``f`` (to 1e-4) such that removing ``f`` of every step's channels (rounded as the
    environment rounds, within its action range) leaves at most ``target_density`` of the MACs.

    Raises:
        ConfigError: not even the action range's upper end reaches the target.
    """
    low, high = env.config.action_range
    size = env.config.group_size

    def macs(f: float) -> int:
        return env.mac_model.macs([removal_count(f, s.num_channels, size) for s in env.steps])

    budget = target_density * env.dense_macs
    if macs(high) > budget:
        raise ConfigError(f"Uniform pruning within --amc-action-range cannot reach density {target_density}.")
    lo, hi = low, high
    if macs(lo) <= budget:
        return lo
    while hi - lo > 1e-4:
        mid = (lo + hi) / 2
        if macs(mid) <= budget:
            hi = mid
        else:
            lo = mid
    return hi


def action_for_fraction(fraction: float, low: float, high: float) -> float:
    """The agent action in ``[-1, 1]`` that :func:`~distiller.amc.actions.scale_action` maps to ``fraction``."""
    if high == low:
        return -1.0
    return 2.0 * (fraction - low) / (high - low) - 1.0


def play_fractions(env: AMCEnv, fractions: Sequence[float], seed: int | None = None) -> EpisodeOutcome:
    """Run one episode with the given fraction per step; returns its outcome (the thinned network and score)."""
    if len(fractions) != env.num_steps:
        raise ConfigError(f"Expected {env.num_steps} fractions (one per step), got {len(fractions)}.")
    outcomes: list[EpisodeOutcome] = []
    env.listeners.append(outcomes.append)
    try:
        env.reset(seed=seed)
        low, high = env.config.action_range
        for fraction in fractions:
            env.step([action_for_fraction(fraction, low, high)])
    finally:
        env.listeners.remove(outcomes.append)
    return outcomes[-1]
