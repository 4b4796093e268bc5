"""The issue's acceptance check, in the default suite's reach only as a `slow` test: on a briefly trained
Plain-20 (CIFAR-10), an AMC search at 50% of the MACs beats uniform L1 pruning to the same MACs in test
accuracy before fine-tuning, averaged over three seeds. The search prunes as the original's Plain-20
recipe does (``channels`` with ``fm-reconstruction``); uniform L1 removes the lowest-L1 channels of every
group alike. ``benchmarks/amc_vs_uniform.py`` runs the full version (and the same-method comparisons) and
writes the figures. About 10 minutes on one CPU thread."""

from __future__ import annotations

import statistics

import pytest
import torch

from distiller.amc import AMCConfig, AMCEnv, CachedBatches, amc_search, play_fractions, uniform_fraction
from distiller.amc.evaluation import evaluate_batches
from distiller.data import load_data
from distiller.models import create_model
from shared_data import CIFAR10_DIR, require

pytest.importorskip("stable_baselines3")


def train_plain20(loaders, epochs: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("plain20_cifar", "cifar10")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for epoch in range(epochs):
        if epoch == (2 * epochs) // 3:
            for group in optimizer.param_groups:
                group["lr"] = 0.01
        loaders.set_epoch(epoch)
        model.train()
        for x, y in loaders.train:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    return model.eval()


@pytest.mark.slow
@pytest.mark.realdata
def test_amc_beats_uniform_l1_on_plain20_at_half_the_macs():
    loaders = load_data("cifar10", require(CIFAR10_DIR), batch_size=250, seed=0, effective_test_size=2000)
    model = train_plain20(loaders, epochs=6)
    rewards = CachedBatches(loaders.calibration_loader(500))
    test = CachedBatches(loaders.test)
    config = AMCConfig(target_density=0.5, prune_pattern="channels", prune_method="fm-reconstruction")

    uniform_env = AMCEnv(model, rewards, AMCConfig(target_density=0.5, prune_pattern="channels"))
    uniform = play_fractions(uniform_env, [uniform_fraction(uniform_env, 0.5)] * uniform_env.num_steps)
    assert uniform.normalized_macs <= 0.5
    uniform_top1 = evaluate_batches(uniform.model, test).top1

    found = []
    for seed in (0, 1, 2):
        result = amc_search(
            AMCEnv(model, rewards, config), algorithm="DDPG", heatup_episodes=10, training_episodes=40, seed=seed
        )
        assert all(r.normalized_macs <= 0.5 for r in result.records)
        found.append(evaluate_batches(result.best_model, test).top1)
    assert statistics.mean(found) > uniform_top1 + 5, (found, uniform_top1)
