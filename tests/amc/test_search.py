"""amc_search with stable-baselines3's DDPG/TD3/PPO and the random policy on simplenet_digits: targets met,
files written, the schedule validates and reproduces the densities, the best network thins and evaluates."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

from distiller.amc.agents import canonical_algorithm
from distiller.amc.config import AMCConfig
from distiller.amc.environment import AMCEnv
from distiller.amc.evaluation import evaluate_batches
from distiller.amc.outputs import (
    csv_header,
    plot_rewards,
    schedule_dict,
    sparsity_for_count,
    write_episodes_csv,
    write_schedule,
)
from distiller.amc.search import amc_search
from distiller.config import file_config, validate_schedule
from distiller.errors import ConfigError
from distiller.models import create_model
from distiller.summary import compute_summary

pytest.importorskip("stable_baselines3")


def search(model, batches, algorithm, episodes=(3, 3), **config):
    env = AMCEnv(model, batches, AMCConfig(**{"target_density": 0.5, **config}))
    seen = []
    result = amc_search(
        env,
        algorithm=algorithm,
        heatup_episodes=episodes[0],
        training_episodes=episodes[1],
        seed=0,
        on_episode=lambda record, outcome: seen.append(record.episode),
    )
    return env, result, seen


@pytest.mark.parametrize("algorithm", ["DDPG", "Random-policy"])
def test_search_meets_the_target_every_episode_and_keeps_the_best(algorithm, trained_digits_model, digits_batches):
    env, result, seen = search(trained_digits_model, digits_batches, algorithm)
    assert [r.episode for r in result.records] == seen == list(range(1, 7))
    assert [r.heatup for r in result.records] == [True] * 3 + [False] * 3
    assert all(r.normalized_macs <= 0.5 for r in result.records)
    best = max(result.records, key=lambda r: r.reward)
    assert result.best == best
    assert compute_summary(result.best_model).attrs["total_macs"] == best.macs
    assert evaluate_batches(result.best_model, digits_batches).top1 == pytest.approx(best.top1)
    for r in result.records:
        assert r.seconds >= r.seconds_evaluation > 0 and r.seconds_agent >= 0
        assert r.densities == tuple(1 - a for a in r.actions)


@pytest.mark.parametrize("algorithm", ["td3", "ClippedPPO-continuous"])
def test_other_agents_run_the_asked_number_of_episodes(algorithm, trained_digits_model, digits_batches):
    _, result, _ = search(trained_digits_model, digits_batches, algorithm, episodes=(2, 3))
    assert len(result.records) == 5 and all(r.normalized_macs <= 0.5 for r in result.records)


def test_algorithm_names_accept_the_original_spellings():
    assert canonical_algorithm("ddpg") == "DDPG"
    assert canonical_algorithm("ClippedPPO-continuous") == canonical_algorithm("ppo") == "ClippedPPO-continuous"
    assert canonical_algorithm("RANDOM-POLICY") == "Random-policy"
    with pytest.raises(ConfigError, match="ClippedPPO-continuous"):
        canonical_algorithm("ClippedPPO-discrete")


def test_outputs_csv_yaml_and_plot(tmp_path, trained_digits_model, digits_batches):
    env, result, _ = search(trained_digits_model, digits_batches, "Random-policy", episodes=(0, 4))
    csv_path = write_episodes_csv(result.records, result.steps, tmp_path / "amc_episodes.csv")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == csv_header(result.steps) and "action/conv2" in rows[0]
    assert [int(r["episode"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[0]["action/conv1"]) == pytest.approx(result.records[0].actions[0], abs=1e-6)

    yaml_path = write_schedule(
        result.best, result.steps, "filters", tmp_path / "s.yaml", arch="simplenet_digits", dataset="digits", episodes=4
    )
    dense = create_model("simplenet_digits", "digits")
    dense.load_state_dict(trained_digits_model.state_dict())
    validate_schedule(yaml_path, dense)
    # Applying the schedule to the dense network reproduces the best network's shapes (and, for l1-rank with
    # a single-producer chain, its function).
    scheduler = file_config(dense, torch.optim.SGD(dense.parameters(), lr=0.1), yaml_path)
    scheduler.on_epoch_begin(0)
    scheduler.on_minibatch_begin(0, 0, 1)
    shapes = {k: tuple(v.shape) for k, v in dense.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in result.best_model.state_dict().items()}
    assert evaluate_batches(dense, digits_batches).top1 == pytest.approx(result.best.top1)

    png = plot_rewards(result.records, tmp_path / "amc_rewards.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedule_sparsity_reproduces_the_count():
    for channels in (3, 10, 16, 29, 64, 100, 512):
        for removed in range(channels):
            s = sparsity_for_count(removed, channels)
            assert int(s * channels + 0) == removed or (removed == 0 and s == 0)


def test_schedule_groups_equal_fractions_and_skips_unpruned_steps(trained_digits_model, digits_batches):
    env, result, _ = search(trained_digits_model, digits_batches, "Random-policy", episodes=(0, 1))
    record = result.best
    schedule = schedule_dict(record, result.steps, "channels", arch=None, dataset=None)
    text = yaml.safe_dump(schedule)
    pruned = [s for s, r in zip(result.steps, record.removed) if r]
    assert sum(len(p["weights"]) for p in schedule["pruners"].values()) == len(pruned)
    assert all(
        p["group_type"] == "Channels" and p["group_dependency"] == "Coupled" for p in schedule["pruners"].values()
    )
    assert "ChannelRemover" in text
