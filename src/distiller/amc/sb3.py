"""stable-baselines3 agents for AMC (imported only when such an agent is asked for).

The hyper-parameters follow the DDPG agent the original took from MIT HAN Lab's ``amc-release``
where stable-baselines3 has the same knob: two hidden layers of 300 units, ``tau = 0.01``, batches of
64, a replay buffer that holds the whole search, Gaussian exploration noise that starts at 0.5 (on the
agent's ``[-1, 1]`` scale) and decays by 0.95 per episode after the heat-up, and rewards centred on a
moving average (:class:`RewardBaseline`, HAN Lab's ``moving_alpha = 0.5``).

Credit assignment is HAN Lab's too: an episode's only reward comes at its end, and HAN Lab stores every
transition of the episode with that final reward. Here :class:`ReturnToGoReplayBuffer` rewrites each
stored transition's reward, when its episode ends, to the episode's return from that step on (the
final reward, plus any intermediate ones), and the critic regresses on it directly (``gamma = 0``): a
Monte-Carlo estimate of "how good did the episode turn out after this action", learned from the first
update, instead of a bootstrapped estimate that needs many updates to carry the reward back over 10-50
steps.

During the heat-up (``learning_starts``) DDPG and TD3 act uniformly at random and only fill the buffer.
PPO (the original's Coach "ClippedPPO") is on-policy and has no heat-up of its own: the search runs the
heat-up episodes with a random policy before it, so every agent sees the same number of episodes.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import DDPG, PPO, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise

__all__ = ["DecayingGaussianNoise", "ReturnToGoReplayBuffer", "RewardBaseline", "StopAfterEpisodes", "build_sb3_agent"]


class DecayingGaussianNoise(ActionNoise):
    """``N(0, sigma)`` exploration noise whose ``sigma`` decays by ``decay`` at the end of each episode
    after the first ``hold`` episodes (the heat-up, during which the algorithm acts at random anyway)."""

    def __init__(self, sigma: float, decay: float, hold: int, size: int = 1, seed: int | None = None) -> None:
        super().__init__()
        self.sigma, self.decay, self.hold, self.size = float(sigma), float(decay), int(hold), int(size)
        self.episodes = 0
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> np.ndarray:
        return self.rng.normal(0.0, self.sigma, self.size).astype(np.float32)

    def reset(self) -> None:
        self.episodes += 1
        if self.episodes > self.hold:
            self.sigma *= self.decay


class ReturnToGoReplayBuffer(ReplayBuffer):
    """A replay buffer (one environment) whose transitions carry their episode's return-to-go (undiscounted).

    Rewards are rewritten when the episode's last transition arrives; stable-baselines3 trains at the end
    of each episode (``train_freq=(1, "episode")``), so no transition is sampled before its return is known.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._episode: list[int] = []

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # noqa: ANN001 - SB3's signature
        self._episode.append(self.pos)
        super().add(obs, next_obs, action, reward, done, infos)
        if bool(np.asarray(done).reshape(-1)[0]):
            total = 0.0
            for pos in reversed(self._episode):
                total += float(self.rewards[pos, 0])
                self.rewards[pos, 0] = total
            self._episode = []


class RewardBaseline(gym.Wrapper):
    """Give the agent ``reward - b``, where ``b`` is an exponential moving average of episode rewards.

    Rewards of AMC episodes are close together (accuracies of similar networks); centring them keeps
    the critic's targets near zero. Only the agent sees the centred value: records keep the raw one.
    """

    def __init__(self, env: gym.Env, alpha: float = 0.5) -> None:
        super().__init__(env)
        self.alpha = alpha
        self.baseline: float | None = None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            if self.baseline is None:
                self.baseline = float(reward)
            centred = float(reward) - self.baseline
            self.baseline += self.alpha * (float(reward) - self.baseline)
            reward = centred
        return obs, reward, terminated, truncated, info


class StopAfterEpisodes(BaseCallback):
    """Stop ``learn()`` once the environment has finished ``episodes`` episodes (counted by the env)."""

    def __init__(self, env: Any, episodes: int) -> None:
        super().__init__()
        self.amc_env, self.episodes = env, int(episodes)

    def _on_step(self) -> bool:
        return self.amc_env.episodes_done < self.episodes


def build_sb3_agent(
    algo: str, env: gym.Env, *, heatup_episodes: int, total_episodes: int, steps_per_episode: int, seed: int
):
    """The stable-baselines3 model for ``algo`` (``DDPG``, ``TD3`` or ``ClippedPPO-continuous``) on ``env``."""
    wrapped = RewardBaseline(env)
    if algo in ("DDPG", "TD3"):
        noise = DecayingGaussianNoise(0.5, 0.95, heatup_episodes, seed=seed)
        cls = DDPG if algo == "DDPG" else TD3
        return cls(
            "MlpPolicy",
            wrapped,
            learning_rate=1e-3,
            buffer_size=max(total_episodes * steps_per_episode, 1),
            learning_starts=heatup_episodes * steps_per_episode,
            batch_size=64,
            tau=0.01,
            gamma=0.0,  # the buffer's rewards are already the returns (see the module docstring)
            train_freq=(1, "episode"),
            gradient_steps=-1,
            action_noise=noise,
            replay_buffer_class=ReturnToGoReplayBuffer,
            policy_kwargs={"net_arch": [300, 300]},
            seed=seed,
            device="cpu",
            verbose=0,
        )
    if algo == "ClippedPPO-continuous":
        episodes_per_update = 4
        n_steps = steps_per_episode * episodes_per_update
        return PPO(
            "MlpPolicy",
            wrapped,
            learning_rate=3e-4,
            n_steps=n_steps,
            batch_size=n_steps,
            n_epochs=10,
            gamma=1.0,
            gae_lambda=0.95,
            clip_range=0.2,
            policy_kwargs={"net_arch": [64, 64]},
            seed=seed,
            device="cpu",
            verbose=0,
        )
    raise ValueError(f"not a stable-baselines3 algorithm: {algo}")
