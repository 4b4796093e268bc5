"""AMCEnv: the gymnasium contract, episodes, the pruning methods, and what an episode's network is."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from distiller.amc.baselines import play_fractions, uniform_fraction
from distiller.amc.config import AMCConfig
from distiller.amc.environment import AMCEnv
from distiller.amc.evaluation import Finetuner, evaluate_batches
from distiller.errors import ConfigError
from distiller.models import create_model
from distiller.summary import compute_summary


def run_episode(env, actions):
    env.reset(seed=0)
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(np.array([a], dtype=np.float32))
    assert terminated and not truncated
    return reward, info


def test_passes_gymnasium_env_checker(trained_digits_model, digits_batches):
    env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5))
    check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (13,) and env.action_space.shape == (1,)
    assert env.num_steps == 2


def test_model_is_not_changed_and_episodes_restore_the_dense_weights(trained_digits_model, digits_batches):
    before = {k: v.clone() for k, v in trained_digits_model.state_dict().items()}
    env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, prune_method="fm-reconstruction"))
    first = run_episode(env, [0.3, -0.2])
    run_episode(env, [1.0, 1.0])
    again = run_episode(env, [0.3, -0.2])
    assert first == again
    for k, v in trained_digits_model.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("pattern", ["channels", "filters"])
def test_episode_network_is_thinned_meets_the_target_and_matches_the_masked_network(
    pattern, trained_digits_model, digits_batches
):
    env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, prune_pattern=pattern))
    outcomes = []
    env.listeners.append(outcomes.append)
    reward, info = run_episode(env, [-1.0, -1.0])  # the agent asks for nothing; the clamp prunes to the target
    outcome = outcomes[-1]
    assert info["macs"] == outcome.macs <= 0.5 * env.dense_macs
    assert compute_summary(outcome.model).attrs["total_macs"] == outcome.macs
    assert outcome.actions[-1] > 0 and outcome.agent_actions == (0.0, 0.0)
    assert outcome.model.conv2.out_channels == 32 - outcome.removed[1]
    assert reward == pytest.approx(outcome.score.top1 / 100)
    masked = evaluate_batches(env.work, digits_batches)  # the working network still holds the masks
    if pattern == "channels":  # nobody reads a removed channel: thinning is exact
        assert masked.top1 == pytest.approx(outcome.score.top1) and masked.loss == pytest.approx(outcome.score.loss)
    else:  # removed filters leave constants, folded into the consumers: exact away from padded borders
        assert abs(masked.top1 - outcome.score.top1) < 5 and abs(masked.loss - outcome.score.loss) < 0.2


def test_filter_pattern_folds_the_constants_that_channel_pattern_drops(trained_digits_model, digits_batches):
    """Same channels removed; with ``filters`` the BatchNorm shifts of the removed channels survive in the
    consumers, with ``channels`` they are gone: the two networks differ, and have the same shapes."""
    nets = {}
    for pattern in ("filters", "channels"):
        env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, prune_pattern=pattern))
        outcomes = []
        env.listeners.append(outcomes.append)
        run_episode(env, [0.5, 0.0])
        nets[pattern] = outcomes[0]
    assert nets["filters"].removed == nets["channels"].removed
    f, c = nets["filters"].model.state_dict(), nets["channels"].model.state_dict()
    assert {k: v.shape for k, v in f.items()} == {k: v.shape for k, v in c.items()}
    assert not all(torch.equal(f[k], c[k]) for k in f)


def test_models_with_zero_channels_must_be_thinned_first(trained_digits_model, digits_batches):
    model = copy.deepcopy(trained_digits_model)
    with torch.no_grad():
        model.conv1.weight[3] = 0
    with pytest.raises(ConfigError, match="--thinnify"):
        AMCEnv(model, digits_batches, AMCConfig(target_density=0.5))


def test_accuracy_guaranteed_does_not_clamp(trained_digits_model, digits_batches):
    env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(protocol="accuracy-guaranteed"))
    outcomes = []
    env.listeners.append(outcomes.append)
    reward, _ = run_episode(env, [-1.0, -1.0])
    assert outcomes[0].macs == env.dense_macs and reward < 0


def test_unreachable_target_and_missing_finetuner_are_config_errors(trained_digits_model, digits_batches):
    with pytest.raises(ConfigError, match="--amc-target-density"):
        AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.05))
    with pytest.raises(ConfigError, match="--amc-action-range"):
        AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, action_range=(0.5, 0.2)))
    with pytest.raises(ConfigError, match="finetuner"):
        AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, ft_epochs=1))
    with pytest.raises(ConfigError, match="--amc-ranking-noise"):
        AMCConfig(target_density=0.5, ranking_noise=0.1).validate()


def test_group_size_keeps_multiples(trained_digits_model, digits_batches):
    env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(target_density=0.5, group_size=4))
    outcomes = []
    env.listeners.append(outcomes.append)
    for actions in ([0.1, 0.7], [-0.5, 0.9], [1.0, -1.0]):
        run_episode(env, actions)
    for outcome in outcomes:
        assert outcome.model.conv1.out_channels % 4 == 0 and outcome.model.conv2.out_channels % 4 == 0
        assert outcome.macs <= 0.5 * env.dense_macs


def test_stochastic_ranking_follows_the_seed(trained_digits_model, digits_batches):
    config = AMCConfig(protocol="accuracy-guaranteed", prune_method="stochastic-l1-rank", ranking_noise=2.0)
    env = AMCEnv(trained_digits_model, digits_batches, config)
    chosen = []
    for seed in (1, 1, 2):
        env.reset(seed=seed)
        env.step(np.array([0.0], dtype=np.float32))
        chosen.append(list(env._chosen[env.steps[0].group]))
    assert chosen[0] == chosen[1] != chosen[2]


def test_fm_reconstruction_fits_the_dense_outputs_better(trained_digits_model, digits_batches):
    """Removing half of conv1's filters, then re-fitting conv2 on sampled feature maps, keeps conv2's outputs
    closer to the dense network's than masking alone."""
    dense = copy.deepcopy(trained_digits_model)
    x = torch.cat(digits_batches.inputs())
    outputs = {}
    hook = dense.conv2.register_forward_hook(lambda m, i, o: outputs.setdefault("dense", o))
    with torch.no_grad():
        dense(x)
    hook.remove()
    errors = {}
    for method in ("l1-rank", "fm-reconstruction"):
        env = AMCEnv(trained_digits_model, digits_batches, AMCConfig(protocol="harmonic-mean", prune_method=method))
        env.reset(seed=0)
        env.step(np.array([0.25], dtype=np.float32))  # 0.5 of conv1's 16 filters
        got = {}
        hook = env.work.conv2.register_forward_hook(lambda m, i, o, got=got: got.setdefault("y", o))
        with torch.no_grad():
            env.work(x)
        hook.remove()
        errors[method] = float((got["y"] - outputs["dense"]).pow(2).mean())
    assert errors["fm-reconstruction"] < 0.8 * errors["l1-rank"]


def test_reward_frequency_and_finetuning(trained_digits_model, digits_batches, digits_loaders):
    calls = []

    def finetune(model, epochs, masks=None):
        calls.append((epochs, masks is not None))
        Finetuner(list(digits_loaders.train)[:2], lambda p: torch.optim.SGD(p, lr=0.01))(model, epochs, masks)

    config = AMCConfig(target_density=0.5, reward_frequency=1, ft_epochs=1, ft_frequency=1)
    env = AMCEnv(trained_digits_model, digits_batches, config, finetuner=finetune)
    env.reset(seed=0)
    _, reward, terminated, _, _ = env.step(np.array([0.5], dtype=np.float32))
    assert not terminated and 0 < reward <= 1  # an intermediate reward from the masked network
    masks = {k: v.clone() for k, v in env.masks().items()}
    for name, mask in masks.items():  # fine-tuning kept the pruned weights at zero
        assert torch.all(dict(env.work.named_parameters())[name][mask == 0] == 0)
    env.step(np.array([0.5], dtype=np.float32))
    assert calls == [(1, True), (1, False)]  # one epoch mid-episode (masked), one of the thinned network


def test_uniform_baseline_prunes_every_group_alike(random_batches):
    torch.manual_seed(0)
    model = create_model("plain20_cifar", "cifar10")
    env = AMCEnv(model, random_batches(model.input_shape), AMCConfig(protocol="accuracy-guaranteed"))
    fraction = uniform_fraction(env, 0.5)
    outcome = play_fractions(env, [fraction] * env.num_steps)
    assert outcome.macs <= 0.5 * env.dense_macs
    assert len({round(a * 16) / 16 for a in outcome.actions[:7]}) == 1  # the 16-channel groups all lose the same
    smaller = play_fractions(env, [fraction - 0.02] * env.num_steps)
    assert smaller.macs > 0.5 * env.dense_macs
