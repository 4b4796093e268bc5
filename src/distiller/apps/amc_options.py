"""The typed options of AMC (``--amc*``), and which other modes they exclude."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distiller.apps.search_modes import AMC, other_modes_in, reject_combinations
from distiller.errors import ConfigError

if TYPE_CHECKING:
    from distiller.amc.config import AMCConfig
    from distiller.apps.options import ClassifierOptions

__all__ = ["AMCOptions", "check_amc_options", "read_amc_cfg"]


@dataclass
class AMCOptions:
    """Defaults are the original's (``amc_args.py``); see ``docs/algorithms/amc.md``."""

    enabled: bool = False  # --amc
    cfg: str | None = None  # --amc-cfg: YAML with a `network:` list of the layers to search
    protocol: str = "mac-constrained"  # --amc-protocol
    ft_epochs: int = 1  # --amc-ft-epochs: fine-tuning epochs of each episode's network (0: none)
    save_chkpts: bool = False  # --amc-save-chkpts: save every episode's network
    heatup_episodes: int = 100  # --amc-heatup-episodes
    training_episodes: int = 700  # --amc-training-episodes
    reward_frequency: int | None = None  # --amc-reward-frequency: also reward every N steps
    target_density: float | None = None  # --amc-target-density: fraction of the dense MACs to keep
    ft_frequency: int | None = None  # --amc-ft-frequency: fine-tune one epoch every N steps
    prune_pattern: str = "filters"  # --amc-prune-pattern
    prune_method: str = "l1-rank"  # --amc-prune-method
    group_size: int = 1  # --amc-group-size
    reconstruct_pts: int = 10  # --amc-reconstruct-pts
    ranking_noise: float = 0.0  # --amc-ranking-noise
    agent_algo: str = "ClippedPPO-continuous"  # --amc-agent-algo
    action_range: list[float] = field(default_factory=lambda: [0.0, 0.8])  # --amc-action-range

    def env_config(self, layers: list[str] | None = None) -> AMCConfig:
        """The environment's settings (validated)."""
        from distiller.amc.config import AMCConfig

        return AMCConfig(
            protocol=self.protocol,
            target_density=self.target_density,
            action_range=tuple(float(v) for v in self.action_range),  # type: ignore[arg-type]  # validate() checks
            prune_pattern=self.prune_pattern,
            prune_method=self.prune_method,
            group_size=self.group_size,
            ranking_noise=self.ranking_noise,
            reconstruct_pts=self.reconstruct_pts,
            reward_frequency=self.reward_frequency,
            ft_epochs=self.ft_epochs,
            ft_frequency=self.ft_frequency,
            layers=layers,
        ).validate()

    def validate(self) -> None:
        """Check the values when ``--amc`` is on (no data read, no model needed).

        Raises:
            ConfigError: the first bad value; the message names its flag.
        """
        if not self.enabled:
            return
        from distiller.amc.agents import canonical_algorithm

        self.env_config()
        self.agent_algo = canonical_algorithm(self.agent_algo)
        for flag, value in (
            ("--amc-heatup-episodes", self.heatup_episodes),
            ("--amc-training-episodes", self.training_episodes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{flag} is a whole number of episodes, got {value!r}.")
        if self.heatup_episodes + self.training_episodes == 0:
            raise ConfigError("--amc-heatup-episodes plus --amc-training-episodes is 0: there is nothing to search.")


def read_amc_cfg(path: str, arch: str) -> list[str] | None:
    """The layers ``--amc-cfg`` lists for ``arch``: the original's ``network:`` section, either a list of
    layer names or a mapping from architecture names to such lists. ``None`` when there is no file.

    Raises:
        ConfigError: a missing or malformed file, or no list for ``arch``.
    """
    import yaml

    file = Path(path)
    try:
        data: Any = yaml.safe_load(file.read_text())
    except OSError as e:
        raise ConfigError(f"--amc-cfg {path}: cannot read the file ({e.strerror or e}).") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"--amc-cfg {path}: not valid YAML ({e}).") from e
    network = data.get("network") if isinstance(data, dict) else None
    if isinstance(network, dict):
        network = network.get(arch)
        if network is None:
            raise ConfigError(
                f"--amc-cfg {path}: its 'network:' section has no entry for --arch {arch} "
                f"(it has {', '.join(map(str, data['network']))}). Add a list of layer names under '{arch}:'."
            )
    if not isinstance(network, list) or not all(isinstance(n, str) for n in network) or not network:
        raise ConfigError(
            f"--amc-cfg {path}: expected a 'network:' section listing layer names (or a mapping from architecture "
            "names to such lists), e.g.\n  network:\n    - layer1.0.conv1\n    - layer1.1.conv1"
        )
    return list(network)


def check_amc_options(opts: ClassifierOptions) -> None:
    """Validate ``opts.amc`` and its combination with the other modes of ``opts``.

    Raises:
        ConfigError: see :meth:`AMCOptions.validate` and :func:`~distiller.apps.search_modes.reject_combinations`.
    """
    if not opts.amc.enabled:
        return
    opts.amc.validate()
    reject_combinations(AMC, other_modes_in(opts, AMC))
