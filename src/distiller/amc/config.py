"""The settings of an AMC environment, checked once with messages that name the CLI flag."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distiller.amc.actions import check_action_range
from distiller.amc.pruning import METHODS
from distiller.amc.rewards import check_protocol
from distiller.amc.steps import PATTERNS
from distiller.errors import ConfigError

__all__ = ["AMCConfig"]


def _positive_or_none(value: int | None, flag: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{flag} is a positive number of steps (leave it out to disable it), got {value!r}.")


@dataclass(frozen=True)
class AMCConfig:
    """How an :class:`~distiller.amc.environment.AMCEnv` prunes, scores and rewards.

    Attributes:
        protocol: ``--amc-protocol`` (:mod:`distiller.amc.rewards`).
        target_density: ``--amc-target-density``, the fraction of the dense MACs to keep.
        action_range: ``--amc-action-range``, the fractions of a group's channels an action may remove.
        prune_pattern: ``--amc-prune-pattern``, ``filters`` or ``channels`` (:mod:`distiller.amc.steps`).
        prune_method: ``--amc-prune-method`` (:mod:`distiller.amc.pruning`).
        group_size: ``--amc-group-size``: kept channels are rounded up to a multiple of it.
        ranking_noise: ``--amc-ranking-noise`` for ``stochastic-l1-rank``.
        reconstruct_pts: ``--amc-reconstruct-pts``, points per feature map for ``fm-reconstruction``.
        reconstruct_samples: images whose feature maps ``fm-reconstruction`` samples (from the reward subset).
        reward_frequency: ``--amc-reward-frequency``: also reward (evaluate) every that many steps.
        ft_epochs: ``--amc-ft-epochs``: fine-tuning epochs of each episode's network before its reward.
        ft_frequency: ``--amc-ft-frequency``: fine-tune one epoch every that many steps within an episode.
        layers: restrict the steps to the groups of these layers (``--amc-cfg``); None: all.
    """

    protocol: str = "mac-constrained"
    target_density: float | None = None
    action_range: tuple[float, float] = (0.0, 0.8)
    prune_pattern: str = "filters"
    prune_method: str = "l1-rank"
    group_size: int = 1
    ranking_noise: float = 0.0
    reconstruct_pts: int = 10
    reconstruct_samples: int = 256
    reward_frequency: int | None = None
    ft_epochs: int = 0
    ft_frequency: int | None = None
    layers: Sequence[str] | None = None

    def validate(self) -> AMCConfig:
        """Raise :class:`ConfigError` naming the flag of the first bad value; returns self."""
        check_protocol(self.protocol, self.target_density)
        if len(self.action_range) != 2:
            raise ConfigError(f"--amc-action-range takes two numbers, LOW HIGH; got {self.action_range!r}.")
        check_action_range(*self.action_range)
        if self.prune_pattern not in PATTERNS:
            raise ConfigError(f"--amc-prune-pattern must be one of {', '.join(PATTERNS)}, got {self.prune_pattern!r}.")
        if self.prune_method not in METHODS:
            raise ConfigError(f"--amc-prune-method must be one of {', '.join(METHODS)}, got {self.prune_method!r}.")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise ConfigError(f"--amc-group-size is a positive number of channels, got {self.group_size!r}.")
        if not self.ranking_noise >= 0:
            raise ConfigError(f"--amc-ranking-noise is a non-negative standard deviation, got {self.ranking_noise!r}.")
        if self.ranking_noise > 0 and self.prune_method != "stochastic-l1-rank":
            raise ConfigError(
                f"--amc-ranking-noise only applies to --amc-prune-method stochastic-l1-rank (the method is "
                f"{self.prune_method}); drop the flag or switch the method."
            )
        if (
            isinstance(self.reconstruct_pts, bool)
            or not isinstance(self.reconstruct_pts, int)
            or self.reconstruct_pts < 1
        ):
            raise ConfigError(f"--amc-reconstruct-pts is a positive number of points, got {self.reconstruct_pts!r}.")
        if isinstance(self.ft_epochs, bool) or not isinstance(self.ft_epochs, int) or self.ft_epochs < 0:
            raise ConfigError(f"--amc-ft-epochs is a whole number of epochs (0: none), got {self.ft_epochs!r}.")
        _positive_or_none(self.reward_frequency, "--amc-reward-frequency")
        _positive_or_none(self.ft_frequency, "--amc-ft-frequency")
        return self
