#!/usr/bin/env python3
"""Does an AMC search beat uniform L1 pruning at the same MACs budget (before fine-tuning)?

The issue's acceptance check: on a trained Plain-20 (CIFAR-10), prune to ``--target-density`` of the
MACs (a) by removing the same fraction of every channel group, the smallest fraction that meets the
budget ("uniform L1": the lowest-L1 channels go), and (b) by the per-group fractions an AMC search
finds (``mac-constrained``, so every episode meets the budget). Both are thinned and scored by the
same environment code, on the test set (``--test-size`` images), without fine-tuning. With a
``--method`` other than ``l1-rank`` (the original ran Plain-20 with ``fm-reconstruction``), the
uniform network is also built with that method, so the agent's choice is compared on equal terms. The search is
repeated for each ``--seeds`` value (the agent's seed; the reward subset is the same fixed, seeded
subset of the training split), and the mean test accuracy is compared with the uniform network's.

    python benchmarks/amc_vs_uniform.py --data ../shared/data/cifar10 --checkpoint PLAIN20.pth.tar \\
        --heatup 100 --episodes 300 --out benchmarks/results/amc_vs_uniform.json

Without ``--checkpoint`` the script first trains the network for ``--train-epochs`` epochs on the
training split (SGD, lr 0.1 then 0.01 for the last third): a stand-in for a briefly trained Plain-20.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from distiller.amc import AMCConfig, AMCEnv, CachedBatches, amc_search, play_fractions, uniform_fraction
from distiller.amc.evaluation import evaluate_batches
from distiller.data import load_data
from distiller.models import create_model


def train(model: torch.nn.Module, loaders, epochs: int, seed: int) -> None:
    torch.manual_seed(seed)
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
    model.eval()


def progress_printer(seed: int):
    """A per-episode line on stderr: long searches show where they are."""

    def show(record, _outcome) -> None:
        print(
            f"seed {seed} episode {record.episode}: top1 {record.top1:.2f} MACs {record.normalized_macs:.3f} "
            f"({record.seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    return show


def _mean(values) -> float | None:
    values = list(values)
    return statistics.mean(values) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="plain20_cifar")
    parser.add_argument("--data", required=True, help="CIFAR-10 folder")
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: train --train-epochs)")
    parser.add_argument("--train-epochs", type=int, default=6)
    parser.add_argument("--target-density", type=float, default=0.5)
    parser.add_argument("--algo", default="DDPG")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--heatup", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=80, help="learning episodes after the heat-up")
    parser.add_argument("--pattern", default="filters", choices=["filters", "channels"])
    parser.add_argument("--method", default="l1-rank", choices=["l1-rank", "stochastic-l1-rank", "fm-reconstruction"])
    parser.add_argument("--action-range", type=float, nargs=2, default=[0.0, 0.8])
    parser.add_argument("--eval-size", type=int, default=500, help="reward subset (training-split images)")
    parser.add_argument("--test-size", type=float, default=10000, help="test images (count, or fraction <= 1)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/amc_vs_uniform.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    loaders = load_data("cifar10", args.data, batch_size=250, seed=0, effective_test_size=args.test_size)
    torch.manual_seed(0)
    model = create_model(args.arch, "cifar10")
    if args.checkpoint:
        from distiller.checkpoint import load_checkpoint

        load_checkpoint(args.checkpoint, model)
    else:
        train(model, loaders, args.train_epochs, seed=0)
    model.eval()
    reward_set = CachedBatches(loaders.calibration_loader(args.eval_size))
    test_set = CachedBatches(loaders.test)
    dense_test = evaluate_batches(model, test_set)
    config = AMCConfig(
        target_density=args.target_density,
        prune_pattern=args.pattern,
        prune_method=args.method,
        action_range=tuple(args.action_range),
    )

    uniforms = {}
    for method in dict.fromkeys(["l1-rank", args.method]):  # uniform L1, and uniform with the search's method
        env = AMCEnv(model, reward_set, replace(config, prune_method=method))
        fraction = uniform_fraction(env, args.target_density)
        uniform = play_fractions(env, [fraction] * env.num_steps)
        uniforms[method] = {
            "fraction": fraction,
            "normalized_macs": uniform.normalized_macs,
            "reward_top1": uniform.score.top1,
            "test_top1": evaluate_batches(uniform.model, test_set).top1,
        }
    report = {
        "arch": args.arch,
        "weights": args.checkpoint or f"trained here for {args.train_epochs} epochs",
        "target_density": args.target_density,
        "pattern": args.pattern,
        "method": args.method,
        "algorithm": args.algo,
        "episodes_per_seed": {"heatup": args.heatup, "learning": args.episodes},
        "reward_subset": reward_set.num_samples,
        "test_samples": test_set.num_samples,
        "dense": {"test_top1": dense_test.top1, "reward_top1": evaluate_batches(model, reward_set).top1},
        "uniform": uniforms,
        "amc": [],
    }
    for seed in args.seeds:
        env = AMCEnv(model, reward_set, config)
        t0 = time.perf_counter()
        result = amc_search(
            env,
            algorithm=args.algo,
            heatup_episodes=args.heatup,
            training_episodes=args.episodes,
            seed=seed,
            on_episode=progress_printer(seed),
        )
        test = evaluate_batches(result.best_model, test_set)
        report["amc"].append(
            {
                "seed": seed,
                "best_episode": result.best.episode,
                "normalized_macs": result.best.normalized_macs,
                "reward_top1": result.best.top1,
                "test_top1": test.top1,
                "densities": dict(zip((s.layer for s in result.steps), result.best.densities)),
                "mean_reward_top1_heatup": _mean(r.top1 for r in result.records if r.heatup),
                "mean_reward_top1_last_20": _mean(r.top1 for r in result.records[-20:]),
                "search_seconds": time.perf_counter() - t0,
                "median_episode_seconds": statistics.median(r.seconds for r in result.records),
            }
        )
        write(report, uniforms, args.method, started, Path(args.out))  # after every seed: a partial run keeps its seeds
    print(json.dumps(report, indent=2))


def write(report: dict, uniforms: dict, method: str, started: float, out: Path) -> None:
    mean = statistics.mean(r["test_top1"] for r in report["amc"])
    report["amc_mean_test_top1"] = mean
    for name, uniform in uniforms.items():
        report[f"amc_minus_uniform_{name}_test_top1"] = mean - uniform["test_top1"]
    report["amc_beats_uniform_l1"] = mean > uniforms["l1-rank"]["test_top1"]
    report["amc_beats_uniform_same_method"] = mean > uniforms[method]["test_top1"]
    report["total_seconds"] = time.perf_counter() - started
    report["threads"] = torch.get_num_threads()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)


if __name__ == "__main__":
    main()
