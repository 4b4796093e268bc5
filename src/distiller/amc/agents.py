"""The agents of an AMC search (``--amc-agent-algo``): stable-baselines3's DDPG, TD3 and PPO, or a random policy.

The original vendored HAN Lab's DDPG and drove Intel's Coach (TensorFlow) for the others; both are
unmaintained. Here the learning agents are stable-baselines3's (a maintained library, imported only
when one is asked for; :mod:`distiller.amc.sb3` holds their settings), and the random policy, the
baseline every learned policy must beat, needs nothing.

Names are matched case-insensitively, and the original's spellings are accepted: ``DDPG``, ``TD3``,
``ClippedPPO-continuous`` (also ``PPO``), ``Random-policy`` (also ``random``). The original's
``ClippedPPO-discrete`` has no counterpart here (the action is continuous) and is refused.

Every agent runs ``heatup + training`` episodes. DDPG and TD3 act at random for the heat-up's
steps (``learning_starts``), then learn; PPO, being on-policy, learns only from its own actions, so
the heat-up episodes run with the random policy first; the random policy runs all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distiller.errors import ConfigError

__all__ = ["ALGORITHMS", "RandomAgent", "canonical_algorithm", "run_agent"]

ALGORITHMS = ("DDPG", "TD3", "ClippedPPO-continuous", "Random-policy")
_ALIASES = {
    "ddpg": "DDPG",
    "td3": "TD3",
    "clippedppo-continuous": "ClippedPPO-continuous",
    "clippedppo": "ClippedPPO-continuous",
    "ppo": "ClippedPPO-continuous",
    "random-policy": "Random-policy",
    "random": "Random-policy",
}


def canonical_algorithm(name: str) -> str:
    """The canonical spelling of an ``--amc-agent-algo`` name.

    Raises:
        ConfigError: an unknown name (``ClippedPPO-discrete`` included), naming the choices.
    """
    key = str(name).strip().lower().replace("_", "-")
    if key in _ALIASES:
        return _ALIASES[key]
    hint = " The action here is continuous; use ClippedPPO-continuous." if "discrete" in key else ""
    raise ConfigError(f"--amc-agent-algo must be one of {', '.join(ALGORITHMS)} (any case), got {name!r}.{hint}")


@dataclass
class RandomAgent:
    """Uniform random actions in ``[-1, 1]`` (the whole ``--amc-action-range``), from its own seeded generator."""

    seed: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)

    def run(self, env, episodes: int) -> None:
        """Play ``episodes`` whole episodes on ``env``."""
        for _ in range(episodes):
            env.reset(seed=int(self.rng.integers(2**31)))
            done = False
            while not done:
                action = self.rng.uniform(-1.0, 1.0, size=env.action_space.shape).astype(np.float32)
                _, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated


def _sb3():
    try:
        from distiller.amc import sb3
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ConfigError(
            f"--amc-agent-algo DDPG, TD3 and ClippedPPO-continuous need stable-baselines3 ({e}). Install it with "
            "'pip install distiller[amc]' (or 'pip install stable-baselines3'), or use --amc-agent-algo Random-policy."
        ) from e
    return sb3


def run_agent(algo: str, env, *, heatup_episodes: int, training_episodes: int, seed: int = 0) -> None:
    """Run ``heatup_episodes + training_episodes`` episodes of ``env`` with agent ``algo``.

    Raises:
        ConfigError: an unknown algorithm, negative episode counts, or stable-baselines3 missing.
    """
    algo = canonical_algorithm(algo)
    for flag, value in (("--amc-heatup-episodes", heatup_episodes), ("--amc-training-episodes", training_episodes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{flag} is a whole number of episodes, got {value!r}.")
    total = heatup_episodes + training_episodes
    if total == 0:
        raise ConfigError("--amc-heatup-episodes plus --amc-training-episodes is 0: there is nothing to search.")
    if algo == "Random-policy":
        RandomAgent(seed).run(env, total)
        return
    sb3 = _sb3()
    steps = env.num_steps
    if algo == "ClippedPPO-continuous" and heatup_episodes:
        RandomAgent(seed).run(env, heatup_episodes)
    model = sb3.build_sb3_agent(
        algo, env, heatup_episodes=heatup_episodes, total_episodes=total, steps_per_episode=steps, seed=seed
    )
    stop = sb3.StopAfterEpisodes(env, total)
    if env.episodes_done < total:
        # learn() stops through the callback; the budget only has to be large enough to get there.
        model.learn(total_timesteps=(total - env.episodes_done + 1) * steps * 2, callback=stop)
