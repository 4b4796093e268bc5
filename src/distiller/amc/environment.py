"""``AMCEnv``: AMC's pruning episode as a ``gymnasium`` environment.

An episode walks the model's prunable channel groups (:mod:`distiller.amc.steps`) in graph order.
At each step the agent sees the 13-feature observation of the group (:mod:`distiller.amc.observation`)
and answers with one number in ``[-1, 1]``, mapped onto ``--amc-action-range``: the fraction of the
group's channels to remove. Under ``mac-constrained`` the fraction is raised just enough to keep the
MACs target reachable (:mod:`distiller.amc.actions`). The chosen channels (:mod:`distiller.amc.pruning`)
are masked right away, so later steps rank on the pruned network; after the last step the network is
thinned (a copy: the working model keeps its dense shapes), optionally fine-tuned, scored on the
cached reward subset, and rewarded (:mod:`distiller.amc.rewards`). Intermediate rewards are 0 unless
``reward_frequency`` asks for more.

Costs are kept per episode, not per run: the structure (graph, coupling, MAC table) is analysed
once; the dense weights are kept as a state dict and copied back into the same working model at
every reset (no new model, no re-trace); the thinning plan is built from the episode's decisions, not
by tracing; and the reward subset is decoded once (:class:`~distiller.amc.evaluation.CachedBatches`).

Listeners (``env.listeners``) receive an :class:`EpisodeOutcome` with the thinned network at the end
of each episode; that is how the search keeps records and the best network, whatever the agent.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from distiller.amc.actions import allowed_counts, check_reachable, clamp_to_target, removal_count, scale_action
from distiller.amc.config import AMCConfig
from distiller.amc.evaluation import CachedBatches, Finetuner, Score, evaluate_batches
from distiller.amc.observation import FEATURES, normalize_columns, observation, static_features
from distiller.amc.pruning import (
    ChannelReconstructor,
    apply_masks,
    channel_scores,
    choose_channels,
    mask_channels,
    mask_roles,
    thinning_plan,
)
from distiller.amc.rewards import CLAMPED_PROTOCOLS, compute_reward
from distiller.amc.steps import AMCNetwork, analyze_network
from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.thinning import ThinningPlan, plan_from_masks

__all__ = ["AMCEnv", "EpisodeOutcome"]


@dataclass
class EpisodeOutcome:
    """The result of one finished episode.

    Attributes:
        episode: 1-based episode number.
        reward: the protocol's reward.
        score: accuracy and loss on the reward subset.
        macs: the thinned network's MACs per sample (convolutions and Linear layers).
        dense_macs: the starting network's.
        params: the thinned network's parameter count.
        actions: per step, the fraction of the group's channels removed (after rounding and clamping).
        agent_actions: per step, the fraction the agent asked for.
        removed: per step, the channels removed.
        model: the thinned (and, with ``ft_epochs``, fine-tuned) network.
        seconds: time spent in ``pruning``, ``thinning``, ``finetuning`` and ``evaluation``.
    """

    episode: int
    reward: float
    score: Score
    macs: int
    dense_macs: int
    params: int
    actions: tuple[float, ...]
    agent_actions: tuple[float, ...]
    removed: tuple[int, ...]
    model: nn.Module
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def normalized_macs(self) -> float:
        return self.macs / self.dense_macs


class AMCEnv(gym.Env):
    """Prune ``model``'s channel groups one step at a time; reward the result's accuracy (see module docstring).

    Args:
        model: the dense, trained network (not changed: the environment works on a copy).
        reward_batches: the reward subset, cached (or any iterable of ``(inputs, targets)``, cached here).
        config: the settings (validated here).
        dataset: the dataset whose input shape the graph is traced with (default: ``model.input_shape``).
        example: an example input batch instead of ``dataset``.
        finetuner: fine-tunes a network (needed when ``config`` asks for fine-tuning).
        seed: seed of ``fm-reconstruction``'s sampled points (the ranking noise follows ``reset(seed=...)``).

    Raises:
        ConfigError: bad settings, no prunable group, an unreachable target, or fine-tuning without a finetuner.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        model: nn.Module,
        reward_batches: CachedBatches | Any,
        config: AMCConfig,
        *,
        dataset: str | None = None,
        example: torch.Tensor | None = None,
        finetuner: Finetuner | Callable[..., None] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.config = config.validate()
        if (config.ft_epochs or config.ft_frequency) and finetuner is None:
            raise ConfigError("--amc-ft-epochs / --amc-ft-frequency need training data: pass a finetuner.")
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.work = copy.deepcopy(model).eval()
        if example is not None:
            example = example[:1].to(device)
        self.network: AMCNetwork = analyze_network(
            self.work, pattern=config.prune_pattern, dataset=dataset, example=example, layers=config.layers
        )
        self.batches = (
            reward_batches if isinstance(reward_batches, CachedBatches) else CachedBatches(reward_batches, device)
        )
        self.finetuner = finetuner
        self.steps = self.network.steps
        self.mac_model = self.network.mac_model
        self.dense_macs = self.mac_model.dense_macs
        self.dense_params = sum(p.numel() for p in model.parameters())
        self._dense_state = {k: v.detach().clone() for k, v in self.work.state_dict().items()}
        self._params = {normalize_module_name(n): p for n, p in self.work.named_parameters()}
        tensors = dict(self.work.named_parameters())
        tensors.update(dict(self.work.named_buffers()))
        self._shapes = {normalize_module_name(n): tuple(t.shape) for n, t in tensors.items()}
        self._check_no_zero_channels()
        self._roles = mask_roles(config.prune_pattern, config.prune_method)
        self._static = normalize_columns(static_features(self.steps))
        n = len(self.steps)
        self._later_layers = [sorted(self.mac_model.step_layers(range(t + 1, n))) for t in range(n)]
        low, high = config.action_range
        size = config.group_size
        self.min_counts = [removal_count(low, s.num_channels, size) for s in self.steps]
        self.max_counts = [removal_count(high, s.num_channels, size) for s in self.steps]
        self.clamped = config.protocol in CLAMPED_PROTOCOLS
        if self.clamped:
            check_reachable(self.mac_model, self.max_counts, config.target_density)  # type: ignore[arg-type]
        self.target_macs = (config.target_density or 1.0) * self.dense_macs
        self.reconstructor = None
        if config.prune_method == "fm-reconstruction":
            inputs = self.batches.inputs(config.reconstruct_samples)
            groups = [self.network.group(t) for t in range(n)]
            self.reconstructor = ChannelReconstructor(self.work, groups, inputs, config.reconstruct_pts, seed)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (len(FEATURES),), np.float32)
        self.listeners: list[Callable[[EpisodeOutcome], None]] = []
        self.episodes_done = 0
        self._t = n  # no episode until reset()
        self._start_episode()

    # --- gymnasium API --------------------------------------------------------------------------

    @property
    def num_steps(self) -> int:
        return len(self.steps)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._start_episode()
        return self._observation(), {}

    def step(self, action):
        if self._t >= self.num_steps:
            raise RuntimeError("The episode is over; call reset() first.")
        t, spec = self._t, self.steps[self._t]
        start = time.perf_counter()
        fraction = scale_action(float(np.asarray(action, dtype=np.float64).reshape(-1)[0]), *self.config.action_range)
        count = removal_count(fraction, spec.num_channels, self.config.group_size)
        count = min(max(count, self.min_counts[t]), self.max_counts[t])
        if self.clamped:
            candidates = allowed_counts(spec.num_channels, self.config.group_size, count, self.max_counts[t])
            count = clamp_to_target(self.mac_model, self._removed, t, candidates, self.max_counts, self.target_macs)
        self._prune(t, count)
        self._agent_actions.append(fraction)
        self._actions.append(count / spec.num_channels)
        self._t += 1
        self._seconds["pruning"] += time.perf_counter() - start
        done = self._t == self.num_steps
        freq = self.config.ft_frequency
        if freq and not done and self._t % freq == 0:
            self._timed("finetuning", self.finetuner, self.work, 1, self._masks)  # type: ignore[misc]
        reward, info = 0.0, {}
        if done:
            outcome = self._finish()
            reward = outcome.reward
            info = {
                "reward": outcome.reward,
                "top1": outcome.score.top1,
                "macs": outcome.macs,
                "normalized_macs": outcome.normalized_macs,
            }
        elif self.config.reward_frequency and self._t % self.config.reward_frequency == 0:
            score = self._timed("evaluation", evaluate_batches, self.work, self.batches)
            reward = self._reward(score.top1, self.mac_model.macs(self._removed))
        return self._observation(), float(reward), done, False, info

    # --- the episode -----------------------------------------------------------------------------

    def _start_episode(self) -> None:
        self.work.load_state_dict(self._dense_state)
        self.work.eval()
        self._t = 0
        self._masks: dict[str, torch.Tensor] = {}
        self._removed = [0] * self.num_steps
        self._chosen: dict[int, list[int]] = {}
        self._actions: list[float] = []
        self._agent_actions: list[float] = []
        self._seconds = {"pruning": 0.0, "thinning": 0.0, "finetuning": 0.0, "evaluation": 0.0}

    def _timed(self, what: str, fn, *args):
        start = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._seconds[what] += time.perf_counter() - start

    def _prune(self, t: int, count: int) -> None:
        group = self.network.group(t)
        self._removed[t] = count
        if count == 0:
            self._chosen[group.index] = []
            return
        noise = self.config.ranking_noise if self.config.prune_method == "stochastic-l1-rank" else 0.0
        scores = channel_scores(group, self._params, noise, self.np_random)
        channels = choose_channels(scores, count)
        self._chosen[group.index] = channels
        mask_channels(group, channels, self._params, self._masks, self._roles)
        apply_masks(self._params, self._masks)
        if self.reconstructor is not None:
            self.reconstructor.reconstruct(group, self._params, self._masks)

    def _reward(self, top1: float, macs: int) -> float:
        c = self.config
        return compute_reward(c.protocol, top1, macs, self.dense_macs, c.target_density)

    def thinned_copy(self) -> nn.Module:
        """The current (masked) working network, thinned: a new module with the removed channels gone."""
        model = copy.deepcopy(self.work)
        plan = self._thinning_plan()
        if len(plan) or plan.shifts:
            plan.apply(model)
        return model.eval()

    def _thinning_plan(self) -> ThinningPlan:
        """Remove exactly the channels the episode chose; with masked filters, fold the constants they leave."""
        groups = {g.index: g for g in self.network.coupling.groups}
        chosen = {g: c for g, c in self._chosen.items() if c}
        if self._roles != ("producer",):
            return thinning_plan(groups, chosen, self._shapes)
        masks = self._masks
        report = plan_from_masks(self.network.graph, masks, coupling=self.network.coupling)
        failed = [g for g, c in chosen.items() if report.removed.get(g) != c]
        if failed:  # a constant could not be folded (no bias or BatchNorm after the consumer): unread it instead
            masks = {k: v.clone() for k, v in masks.items()}
            for g in failed:
                mask_channels(groups[g], chosen[g], self._params, masks, ("consumer",))
            report = plan_from_masks(self.network.graph, masks, coupling=self.network.coupling)
        if report.removed != chosen:
            raise RuntimeError(f"thinning would remove {report.removed}, the episode chose {chosen}")
        return report.plan

    def _check_no_zero_channels(self) -> None:
        """Refuse a model with all-zero channels (a masked checkpoint): thinning would remove them whatever
        the agent does, and the MAC count would be wrong."""
        tensors = {normalize_module_name(n): p.detach() for n, p in self.work.named_parameters()}
        zero = sum(
            int(group.zero_channels(tensors, role).sum())
            for group in self.network.coupling.prunable
            for role in ("producer", "consumer")
        )
        if zero:
            raise ConfigError(
                f"The model has {zero} channel(s) whose filters or input weights are all zero (a pruned, unthinned "
                "checkpoint?). Thin it first (add --thinnify, or run 'distiller classify --thinnify --resume-from "
                "CHECKPOINT'), so that AMC starts from the network that actually runs."
            )

    def _finish(self) -> EpisodeOutcome:
        model = self._timed("thinning", self.thinned_copy)
        if self.config.ft_epochs:
            self._timed("finetuning", self.finetuner, model, self.config.ft_epochs)  # type: ignore[misc]
        score = self._timed("evaluation", evaluate_batches, model, self.batches)
        macs = self.mac_model.macs(self._removed)
        self.episodes_done += 1
        outcome = EpisodeOutcome(
            episode=self.episodes_done,
            reward=self._reward(score.top1, macs),
            score=score,
            macs=macs,
            dense_macs=self.dense_macs,
            params=sum(p.numel() for p in model.parameters()),
            actions=tuple(self._actions),
            agent_actions=tuple(self._agent_actions),
            removed=tuple(self._removed),
            model=model,
            seconds=dict(self._seconds),
        )
        for listener in self.listeners:
            listener(outcome)
        return outcome

    def _observation(self) -> np.ndarray:
        n = self.num_steps
        t = min(self._t, n - 1)
        current = self.mac_model.macs(self._removed)
        reduced = (self.dense_macs - current) / self.dense_macs
        rest = 0.0 if self._t >= n else self.mac_model.macs_of(self._later_layers[t], self._removed) / self.dense_macs
        prev_a = self._actions[-1] if self._actions else 0.0
        return observation(self._static[t], reduced, rest, prev_a)

    def masks(self) -> Mapping[str, torch.Tensor]:
        """The current episode's masks ({weight name: 0/1 tensor}) on the working network."""
        return self._masks
