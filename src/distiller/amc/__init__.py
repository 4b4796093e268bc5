"""AMC: AutoML for Model Compression (He et al., ECCV 2018) on a maintained RL library.

A reinforcement-learning agent chooses, channel group by channel group, the fraction of channels
to remove; the environment (:class:`AMCEnv`, a ``gymnasium.Env``) prunes, thins and scores the
result. Agents come from stable-baselines3 (DDPG, TD3, PPO) or are a random policy;
:func:`amc_search` runs a search and keeps every episode's record and the best network. See
``docs/algorithms/amc.md``.

The names below are imported on first use: ``gymnasium`` (the ``amc`` extra) is needed only by the
environment, so importing the package (or its pure modules: steps, MACs, actions, rewards,
observation) needs nothing beyond the core install.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "AMCConfig": "distiller.amc.config",
    "AMCEnv": "distiller.amc.environment",
    "EpisodeOutcome": "distiller.amc.environment",
    "AMCSearchResult": "distiller.amc.search",
    "EpisodeRecord": "distiller.amc.search",
    "amc_search": "distiller.amc.search",
    "CachedBatches": "distiller.amc.evaluation",
    "Finetuner": "distiller.amc.evaluation",
    "analyze_network": "distiller.amc.steps",
    "canonical_algorithm": "distiller.amc.agents",
    "compute_reward": "distiller.amc.rewards",
    "play_fractions": "distiller.amc.baselines",
    "uniform_fraction": "distiller.amc.baselines",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'distiller.amc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
