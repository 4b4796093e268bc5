#!/usr/bin/env python3
"""Time per AMC episode on this CPU, split into its parts (default: ResNet-20 on CIFAR-10, DDPG).

An episode prunes every prunable channel group of the network once (12 steps for ResNet-20),
thins the result, scores it on the reward subset and, for a learning agent, trains the agent. The
script runs a short search (``--heatup`` random episodes, then ``--episodes`` learning ones) and
reports the median wall time per episode and its parts as :mod:`distiller.amc.search` records them:
pruning (ranking and masking), thinning (the copy and its plan), evaluation, and the agent (action
selection and the DDPG updates, which start after the heat-up). It also times the two ways of
getting the dense network back for the next episode: copying the kept dense state dict into the
working model (what the environment does) and deep-copying a model.

The reward subset is ``--eval-size`` images of the CIFAR-10 training split (evaluation transforms)
with ``--data DIR``, else random tensors of the same shape; the weights are ``--checkpoint``'s (e.g.
the original's dense ResNet-20) or random.

    python benchmarks/amc_episode.py --data ../shared/data/cifar10 \\
        --checkpoint ../shared/data/distiller-checkpoints/checkpoint_trained_dense.pth.tar \\
        --out benchmarks/results/amc_episode.json
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from distiller.amc import AMCConfig, AMCEnv, CachedBatches, amc_search
from distiller.models import create_model


def reward_batches(data: str | None, arch_shape: tuple[int, ...], size: int, batch: int, seed: int):
    if data is None:
        g = torch.Generator().manual_seed(seed)
        sizes = [min(batch, size - start) for start in range(0, size, batch)]
        return [
            (torch.randn(n, *arch_shape, generator=g), torch.randint(10, (n,), generator=g)) for n in sizes
        ], "random"
    from distiller.data import load_data

    loaders = load_data("cifar10", data, batch_size=batch, seed=seed)
    return loaders.calibration_loader(size), "cifar10 training split (evaluation transforms)"


def median_ms(fn, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet20_cifar")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: random inputs)")
    parser.add_argument("--checkpoint", default=None, help="trained weights (default: random)")
    parser.add_argument("--eval-size", type=int, default=500, help="reward subset size (images)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--algo", default="DDPG")
    parser.add_argument("--heatup", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=10, help="learning episodes after the heat-up")
    parser.add_argument("--target-density", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/amc_episode.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = create_model(args.arch, "cifar10")
    if args.checkpoint:
        from distiller.checkpoint import load_checkpoint

        load_checkpoint(args.checkpoint, model)
    model.eval()
    batches, source = reward_batches(args.data, tuple(model.input_shape), args.eval_size, args.batch_size, args.seed)
    start = time.perf_counter()
    cached = CachedBatches(batches)
    cache_seconds = time.perf_counter() - start
    start = time.perf_counter()
    env = AMCEnv(model, cached, AMCConfig(target_density=args.target_density))
    setup_seconds = time.perf_counter() - start

    result = amc_search(
        env, algorithm=args.algo, heatup_episodes=args.heatup, training_episodes=args.episodes, seed=args.seed
    )
    records = result.records
    parts = ("pruning", "thinning", "finetuning", "evaluation", "agent")

    def summary(rs) -> dict:
        if not rs:
            return {}
        out = {"episodes": len(rs), "median_seconds": statistics.median(r.seconds for r in rs)}
        out.update({f"median_{p}_seconds": statistics.median(getattr(r, f"seconds_{p}") for r in rs) for p in parts})
        return out

    dense_state = {k: v.clone() for k, v in env.work.state_dict().items()}
    report = {
        "arch": args.arch,
        "algorithm": result.algorithm,
        "reward_subset": {"samples": cached.num_samples, "source": source, "batch_size": args.batch_size},
        "weights": args.checkpoint or "random",
        "steps_per_episode": env.num_steps,
        "dense_macs": env.dense_macs,
        "target_density": args.target_density,
        "cache_reward_subset_seconds": cache_seconds,
        "environment_setup_seconds": setup_seconds,
        "all_episodes": summary(records),
        "heatup_episodes": summary([r for r in records if r.heatup]),
        "learning_episodes": summary([r for r in records if not r.heatup]),
        "restore_dense_ms": {
            "load_state_dict_into_working_model": median_ms(lambda: env.work.load_state_dict(dense_state)),
            "deepcopy_of_the_model": median_ms(lambda: copy.deepcopy(model)),
        },
        "best": {
            "episode": result.best.episode,
            "top1": result.best.top1,
            "normalized_macs": result.best.normalized_macs,
        },
        "machine": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
