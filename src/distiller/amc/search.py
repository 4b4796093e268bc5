"""The AMC search: run an agent on an :class:`~distiller.amc.environment.AMCEnv`, record every episode,
keep the best network.

The records come from the environment's episode listeners, not from the agent, so every agent
(stable-baselines3's or the random policy) yields the same records. The best network is the one
with the highest reward (the first of equals); it is the thinned network the environment built and
scored, kept as is (no copy, no re-pruning).

Wall time per episode is measured between consecutive episode ends and split into the
environment's parts (pruning, thinning, fine-tuning, evaluation) and the rest: the agent's action
selection and training updates (``seconds_agent``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from distiller.amc.agents import canonical_algorithm, run_agent
from distiller.amc.environment import AMCEnv, EpisodeOutcome
from distiller.amc.steps import StepSpec

__all__ = ["AMCSearchResult", "EpisodeRecord", "amc_search"]


@dataclass(frozen=True)
class EpisodeRecord:
    """One episode of a search (what ``amc_episodes.csv`` holds).

    Attributes:
        episode: 1-based number.
        heatup: whether it was a heat-up (random) episode.
        reward: the protocol's reward.
        top1: accuracy (percent) on the reward subset.
        top5: top-5 accuracy.
        loss: mean loss on the reward subset.
        macs: MACs per sample of the network.
        normalized_macs: ``macs`` over the dense network's.
        params: parameters of the thinned network.
        actions: per step, the fraction of channels removed.
        agent_actions: per step, the fraction the agent asked for (before rounding and clamping).
        removed: per step, the channels removed.
        densities: per step, the fraction of channels kept (``1 - action``).
        seconds: wall time of the episode.
        seconds_pruning: ranking, masking and reconstruction.
        seconds_thinning: building the thinned network.
        seconds_finetuning: fine-tuning (0 without ``--amc-ft-*``).
        seconds_evaluation: scoring on the reward subset.
        seconds_agent: the rest: the agent choosing actions and training.
    """

    episode: int
    heatup: bool
    reward: float
    top1: float
    top5: float
    loss: float
    macs: int
    normalized_macs: float
    params: int
    actions: tuple[float, ...]
    agent_actions: tuple[float, ...]
    removed: tuple[int, ...]
    densities: tuple[float, ...]
    seconds: float
    seconds_pruning: float
    seconds_thinning: float
    seconds_finetuning: float
    seconds_evaluation: float
    seconds_agent: float


@dataclass
class AMCSearchResult:
    """Every episode's record, the best one and its network, and what the steps were."""

    records: list[EpisodeRecord]
    best: EpisodeRecord
    best_model: nn.Module
    steps: list[StepSpec]
    dense_macs: int
    dense_params: int
    algorithm: str


class _Recorder:
    def __init__(self, heatup: int, on_episode: Callable[[EpisodeRecord, EpisodeOutcome], None] | None) -> None:
        self.heatup = heatup
        self.on_episode = on_episode
        self.records: list[EpisodeRecord] = []
        self.best: tuple[EpisodeRecord, nn.Module] | None = None
        self.last = time.perf_counter()

    def __call__(self, outcome: EpisodeOutcome) -> None:
        now = time.perf_counter()
        wall, self.last = now - self.last, now
        s = outcome.seconds
        env_seconds = sum(s.values())
        record = EpisodeRecord(
            episode=outcome.episode,
            heatup=outcome.episode <= self.heatup,
            reward=outcome.reward,
            top1=outcome.score.top1,
            top5=outcome.score.top5,
            loss=outcome.score.loss,
            macs=outcome.macs,
            normalized_macs=outcome.normalized_macs,
            params=outcome.params,
            actions=outcome.actions,
            agent_actions=outcome.agent_actions,
            removed=outcome.removed,
            densities=tuple(1.0 - a for a in outcome.actions),
            seconds=wall,
            seconds_pruning=s.get("pruning", 0.0),
            seconds_thinning=s.get("thinning", 0.0),
            seconds_finetuning=s.get("finetuning", 0.0),
            seconds_evaluation=s.get("evaluation", 0.0),
            seconds_agent=max(wall - env_seconds, 0.0),
        )
        self.records.append(record)
        if self.best is None or record.reward > self.best[0].reward:
            self.best = (record, outcome.model)
        if self.on_episode is not None:
            self.on_episode(record, outcome)


def amc_search(
    env: AMCEnv,
    *,
    algorithm: str = "DDPG",
    heatup_episodes: int = 100,
    training_episodes: int = 700,
    seed: int = 0,
    on_episode: Callable[[EpisodeRecord, EpisodeOutcome], None] | None = None,
) -> AMCSearchResult:
    """Search with ``algorithm`` for ``heatup_episodes + training_episodes`` episodes.

    Args:
        env: the environment (its listeners get one more, removed afterwards).
        algorithm: an ``--amc-agent-algo`` name (:func:`~distiller.amc.agents.canonical_algorithm`).
        heatup_episodes: random episodes before learning.
        training_episodes: learning episodes.
        seed: the agent's seed.
        on_episode: called after every episode with its record and outcome (write files, log, save).

    Returns:
        The records, the best record and its thinned network.

    Raises:
        ConfigError: an unknown algorithm or bad episode counts (before any episode runs).
    """
    algorithm = canonical_algorithm(algorithm)
    recorder = _Recorder(heatup_episodes, on_episode)
    env.listeners.append(recorder)
    try:
        run_agent(algorithm, env, heatup_episodes=heatup_episodes, training_episodes=training_episodes, seed=seed)
    finally:
        env.listeners.remove(recorder)
    assert recorder.best is not None  # run_agent runs at least one episode
    best, model = recorder.best
    return AMCSearchResult(
        records=recorder.records,
        best=best,
        best_model=model,
        steps=list(env.steps),
        dense_macs=env.dense_macs,
        dense_params=env.dense_params,
        algorithm=algorithm,
    )
