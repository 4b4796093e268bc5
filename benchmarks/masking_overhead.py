#!/usr/bin/env python3
"""Cost of hard pruning masks in a training step, against a plain loop and torch.nn.utils.prune.

Three loops train the same model on the same random batches (CPU):

* ``plain``: no compression;
* ``distiller``: an active AGP element-wise pruning policy on every conv/linear weight (masks
  recomputed every epoch, re-applied after every optimizer step through the scheduler hooks);
* ``torch_prune``: ``torch.nn.utils.prune.l1_unstructured`` forward-pre-hook masks on the same weights.

Each is timed over ``--steps`` steps after warm-up, interleaved in rounds (in rotating order) so
machine noise hits all three alike; the median step time and the ratios to ``plain`` are written as JSON.

    python benchmarks/masking_overhead.py --out benchmarks/results/masking_overhead.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from distiller.config import dict_config
from distiller.models import create_model


def prunable_weights(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.dim() in (2, 4)]


def agp_schedule(weights: list[str]) -> dict:
    return {
        "version": 1,
        "pruners": {
            "agp": {"class": "AutomatedGradualPruner", "initial_sparsity": 0.05, "final_sparsity": 0.8,
                    "weights": weights},
        },
        "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 10, "frequency": 1}],
    }


class Loop:
    """One training setup; ``step()`` runs one minibatch with the scheduler hooks (if any)."""

    def __init__(self, kind: str, arch: str, batch: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = create_model(arch)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.criterion = nn.CrossEntropyLoss()
        shape = self.model.input_shape
        self.inputs = torch.randn(batch, *shape)
        self.target = torch.randint(0, self.model.num_classes, (batch,))
        self.scheduler = None
        if kind == "distiller":
            self.scheduler = dict_config(self.model, self.optimizer, agp_schedule(prunable_weights(self.model)))
            self.scheduler.on_epoch_begin(0, self.optimizer)
        elif kind == "torch_prune":
            for name in prunable_weights(self.model):
                module = self.model.get_submodule(name.rsplit(".", 1)[0])
                torch_prune.l1_unstructured(module, "weight", amount=0.5)
        self.model.train()
        self.steps_done = 0

    def step(self) -> None:
        s, m, o = self.scheduler, self.model, self.optimizer
        i = self.steps_done
        if s is not None:
            s.on_minibatch_begin(0, i, 1000, o)
        loss = self.criterion(m(self.inputs), self.target)
        if s is not None:
            loss = s.before_backward_pass(0, i, 1000, loss, o)
        o.zero_grad(set_to_none=True)
        loss.backward()
        if s is not None:
            s.before_parameter_optimization(0, i, 1000, o)
        o.step()
        if s is not None:
            s.on_minibatch_end(0, i, 1000, o)
        self.steps_done += 1


def measure(arch: str, batch: int, steps: int, rounds: int) -> dict:
    loops = {kind: Loop(kind, arch, batch) for kind in ("plain", "distiller", "torch_prune")}
    for loop in loops.values():  # warm-up
        loop.step()
    times: dict[str, list[float]] = {kind: [] for kind in loops}
    kinds = list(loops)
    for r in range(rounds):
        for kind in kinds[r % 3 :] + kinds[: r % 3]:  # rotate the order so no loop always runs first
            loop = loops[kind]
            start = time.perf_counter()
            for _ in range(steps):
                loop.step()
            times[kind].append((time.perf_counter() - start) / steps)
    median = {kind: statistics.median(t) for kind, t in times.items()}
    return {
        "arch": arch,
        "batch_size": batch,
        "steps_per_round": steps,
        "rounds": rounds,
        "seconds_per_step": median,
        "ratio_vs_plain": {kind: median[kind] / median["plain"] for kind in median},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/masking_overhead.json")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    cases = [("resnet20_cifar", 128), ("resnet50", 32)]
    if args.quick:
        cases, args.steps, args.rounds = [("resnet20_cifar", 8)], 1, 1
    results = {"torch": torch.__version__, "threads": torch.get_num_threads(),
               "cases": [measure(arch, batch, args.steps, args.rounds) for arch, batch in cases]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    for case in results["cases"]:
        ratios = ", ".join(f"{k} {v:.3f}x" for k, v in case["ratio_vs_plain"].items())
        plain = case["seconds_per_step"]["plain"]
        print(f"{case['arch']} batch {case['batch_size']}: plain {plain:.3f} s/step; {ratios}")
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
