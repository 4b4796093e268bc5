#!/usr/bin/env python3
"""Batch-1 latency of early-exit inference against running the whole network (CPU).

Three ways to classify the same samples one at a time with ``resnet20_cifar_earlyexit``:

* ``backbone``: the network without its exit (``resnet20_cifar``'s cost);
* ``full``: the network with its exit, computing every exit (what the validation simulation runs);
* ``inference``: :class:`distiller.early_exit.EarlyExitInference`, which stops at the first
  confident exit.

The entropy threshold is the ``--exit-fraction`` quantile of the exit's entropies on the samples, so
about that share of them leaves early (default: half). The model is random-initialized unless
``--checkpoint`` gives trained weights; the samples are CIFAR-10 test images with ``--data DIR``,
else random tensors. Each way is timed per sample, interleaved in rounds (rotating order) so machine
noise hits all three alike; the median per-sample latency, the ratios, the share of samples that
exited and the MAC-based prediction are written as JSON.

    python benchmarks/earlyexit_latency.py --data ../shared/data/cifar10 --out benchmarks/results/earlyexit_latency.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from distiller.early_exit import EarlyExitInference, detach_exits, exit_macs, softmax_entropy
from distiller.models import create_model

ARCH = "resnet20_cifar_earlyexit"


def load_samples(data: str | None, count: int, seed: int) -> torch.Tensor:
    """``count`` CIFAR-10 test images (normalized as for evaluation), or random inputs without ``data``."""
    if data is None:
        return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    from distiller.data import load_data

    loaders = load_data("cifar10", data, batch_size=count, effective_test_size=count, seed=seed, test_only=True)
    return next(iter(loaders.test))[0]


def build_model(checkpoint: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model(ARCH)
    if checkpoint:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state))
    return model.eval()


@torch.inference_mode()
def measure(model: torch.nn.Module, samples: torch.Tensor, exit_fraction: float, rounds: int, warmup: int) -> dict:
    entropies = torch.cat([softmax_entropy(model(x)[0]) for x in samples.split(1)])
    threshold = float(torch.quantile(entropies, exit_fraction))
    inference = EarlyExitInference(model, [threshold])
    backbone = copy.deepcopy(model)
    detach_exits(backbone)
    runners = {"backbone": backbone, "full": model, "inference": inference}
    singles = list(samples.split(1))
    for runner in runners.values():
        for x in singles[:warmup]:
            runner(x)
    inference.exits_taken = [0, 0]
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            runner = runners[name]
            start = time.perf_counter()
            for x in singles:
                runner(x)
            times[name].append((time.perf_counter() - start) / len(singles))
    median = {name: statistics.median(t) for name, t in times.items()}
    taken = inference.exits_taken
    costs = exit_macs(model, samples[:1])
    exited = taken[0] / sum(taken)
    predicted_macs = exited * costs.cumulative[0] + (1 - exited) * costs.cumulative[-1]
    return {
        "arch": ARCH,
        "samples": len(singles),
        "rounds": rounds,
        "threshold_nats": threshold,
        "exit_share": {"exit_0": exited, "final": 1 - exited},
        "seconds_per_sample": median,
        "ratio_vs_backbone": {name: median[name] / median["backbone"] for name in median},
        "inference_vs_full": median["inference"] / median["full"],
        "macs": {
            "backbone": costs.backbone,
            "exit_0": costs.cumulative[0],
            "full": costs.cumulative[-1],
            "inference_average": predicted_macs,
            "predicted_ratio_vs_backbone": predicted_macs / costs.backbone,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/earlyexit_latency.json")
    parser.add_argument("--data", default=None, help="CIFAR-10 folder (default: random inputs)")
    parser.add_argument("--checkpoint", default=None, help="trained resnet20_cifar_earlyexit weights")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--exit-fraction", type=float, default=0.5, help="share of samples that should exit early")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.samples, args.rounds, args.warmup = 16, 1, 2
    model = build_model(args.checkpoint)
    samples = load_samples(args.data, args.samples, seed=0)
    result = measure(model, samples, args.exit_fraction, args.rounds, args.warmup)
    result.update(torch=torch.__version__, threads=torch.get_num_threads(), data=args.data or "random",
                  checkpoint=args.checkpoint, quick=args.quick)  # fmt: skip
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    ms = {k: f"{1000 * v:.2f} ms" for k, v in result["seconds_per_sample"].items()}
    print(f"{ARCH}, batch 1, {result['exit_share']['exit_0']:.0%} exit early: {ms}")
    print(f"inference / backbone {result['ratio_vs_backbone']['inference']:.3f}x "
          f"(MACs predict {result['macs']['predicted_ratio_vs_backbone']:.3f}x)")  # fmt: skip
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
