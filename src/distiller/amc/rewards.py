"""AMC's reward protocols (``--amc-protocol``), as pure functions of an episode's result.

``top1`` is the accuracy in percent on the reward subset, ``macs`` the pruned network's MACs,
``dense_macs`` the starting network's.

``mac-constrained`` (the default; AMC §3.4 "resource-constrained compression")
    ``top1 / 100``. Accuracy is all that is rewarded because the action clamp
    (:mod:`distiller.amc.actions`) guarantees that every episode meets ``--amc-target-density``.
``accuracy-guaranteed`` (AMC §3.4 "accuracy-guaranteed compression")
    ``-(1 - top1 / 100) * log(macs)``: the error weighted by the log of the MACs, so the agent trades
    accuracy for compute without a fixed target; no clamp.
``punish-agent``
    ``top1 / 100`` when the network meets the target, else ``target_density - macs / dense_macs``
    (negative, in proportion to how far the network overshoots the budget); no clamp, so the agent
    has to learn the constraint.
``harmonic-mean``
    The F1-style harmonic mean of the accuracy ``top1 / 100`` and the compression ``1 - macs /
    dense_macs`` (0 when both are 0); no clamp, no target.
"""

from __future__ import annotations

import math

from distiller.errors import ConfigError

__all__ = [
    "CLAMPED_PROTOCOLS",
    "PROTOCOLS",
    "TARGETED_PROTOCOLS",
    "accuracy_guaranteed_reward",
    "check_protocol",
    "compute_reward",
    "harmonic_mean_reward",
    "mac_constrained_reward",
    "punish_agent_reward",
]

PROTOCOLS = ("mac-constrained", "accuracy-guaranteed", "punish-agent", "harmonic-mean")
TARGETED_PROTOCOLS = ("mac-constrained", "punish-agent")  # need --amc-target-density
CLAMPED_PROTOCOLS = ("mac-constrained",)  # actions are clamped so the target is always met


def mac_constrained_reward(top1: float) -> float:
    return top1 / 100.0


def accuracy_guaranteed_reward(top1: float, macs: float) -> float:
    return -(1.0 - top1 / 100.0) * math.log(max(macs, 1.0))


def punish_agent_reward(top1: float, macs: float, dense_macs: float, target_density: float) -> float:
    density = macs / dense_macs
    return top1 / 100.0 if density <= target_density else target_density - density


def harmonic_mean_reward(top1: float, macs: float, dense_macs: float, beta: float = 1.0) -> float:
    accuracy = top1 / 100.0
    compression = 1.0 - macs / dense_macs
    denominator = beta**2 * accuracy + compression
    return 0.0 if denominator <= 0 else (1 + beta**2) * accuracy * compression / denominator


def check_protocol(protocol: str, target_density: float | None) -> None:
    """Validate ``--amc-protocol`` and whether it has the ``--amc-target-density`` it needs.

    Raises:
        ConfigError: an unknown protocol, a missing target, or a target outside (0, 1).
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--amc-protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}.")
    if protocol in TARGETED_PROTOCOLS and target_density is None:
        raise ConfigError(
            f"--amc-protocol {protocol} needs --amc-target-density: the fraction of the dense network's MACs to keep "
            "(e.g. 0.5)."
        )
    if target_density is not None and not 0.0 < target_density < 1.0:
        raise ConfigError(f"--amc-target-density is a fraction of the MACs to keep, in (0, 1); got {target_density}.")


def compute_reward(
    protocol: str, top1: float, macs: float, dense_macs: float, target_density: float | None = None
) -> float:
    """The reward of a network under ``protocol`` (see the module docstring)."""
    if protocol == "mac-constrained":
        return mac_constrained_reward(top1)
    if protocol == "accuracy-guaranteed":
        return accuracy_guaranteed_reward(top1, macs)
    if protocol == "punish-agent":
        if target_density is None:
            raise ConfigError("--amc-protocol punish-agent needs --amc-target-density.")
        return punish_agent_reward(top1, macs, dense_macs, target_density)
    if protocol == "harmonic-mean":
        return harmonic_mean_reward(top1, macs, dense_macs)
    raise ConfigError(f"--amc-protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}.")
