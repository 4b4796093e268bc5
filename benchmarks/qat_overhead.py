#!/usr/bin/env python3
"""Training-step time of quantization-aware training against float training (CPU).

Each method trains its own copy of distiller's ``resnet20_cifar`` (same initial weights) on the same
random batch of ``--batch`` 32x32 images:

* ``float``: no quantization;
* ``dorefa_a8_w4``: ``DorefaQuantizer`` with 8-bit activations, 4-bit weights;
* ``pact_a4_w4``: ``PACTQuantizer`` with 4-bit activations and weights (learned clipping α);
* ``lsq_a4_w4``: ``LSQQuantizer`` with 4-bit activations and weights (learned step sizes);
* ``range_linear_a8_w8``: ``QuantAwareTrainRangeLinearQuantizer`` with 8-bit activations, weights and
  biases (EMA activation ranges, quantized input).

Each quantized model is prepared as a training run does it: ``quantizer.prepare_model()`` with the
run's optimizer (SGD, momentum 0.9, weight decay 1e-4), which gains the quantizer's parameter groups.
One timed step is forward + loss + backward + ``optimizer.step()`` and, for the quantized models,
``quantizer.quantize_params()`` (what ``QuantizationPolicy.on_minibatch_end`` does after every step).
After ``--warmup`` steps each, ``--repeats`` rounds time one step of every method, in rotating order so
machine noise hits all alike; the median step time and its ratio to ``float`` are written as JSON.
Goal: every method ≤ 1.6x float (the original's PACT took ~2x DoReFa's time, Distiller #260).

    python benchmarks/qat_overhead.py --out benchmarks/results/qat_overhead.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from distiller.models import create_model
from distiller.quantization import DorefaQuantizer, PACTQuantizer, QuantAwareTrainRangeLinearQuantizer
from distiller.quantization.lsq import LSQQuantizer

GOAL = 1.6

#: name -> (quantizer class, constructor arguments); ``None``: float training.
METHODS: dict[str, tuple[type | None, dict]] = {
    "float": (None, {}),
    "dorefa_a8_w4": (DorefaQuantizer, {"bits_activations": 8, "bits_weights": 4}),
    "pact_a4_w4": (PACTQuantizer, {"bits_activations": 4, "bits_weights": 4}),
    "lsq_a4_w4": (LSQQuantizer, {"bits_activations": 4, "bits_weights": 4}),
    "range_linear_a8_w8": (QuantAwareTrainRangeLinearQuantizer, {"bits_activations": 8, "bits_weights": 8}),
}


class Loop:
    """One training setup; ``step()`` runs one minibatch as a QAT training run does."""

    def __init__(
        self, base: nn.Module, quantizer_cls: type | None, kwargs: dict, inputs: torch.Tensor, target: torch.Tensor
    ) -> None:
        self.model = copy.deepcopy(base).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.criterion = nn.CrossEntropyLoss()
        self.inputs, self.target = inputs, target
        self.quantizer = None
        self.requantize: Callable[[], None] | None = None
        if quantizer_cls is not None:
            self.quantizer = quantizer_cls(self.model, self.optimizer, **kwargs)
            self.quantizer.prepare_model()
            self.requantize = self.quantizer.quantize_params

    def step(self) -> float:
        m, o = self.model, self.optimizer
        loss = self.criterion(m(self.inputs), self.target)
        o.zero_grad(set_to_none=True)
        loss.backward()
        o.step()
        if self.requantize is not None:
            self.requantize()
        return loss.item()

    def info(self) -> dict:
        return {
            "quantizer": type(self.quantizer).__name__ if self.quantizer is not None else None,
            "params": sum(p.numel() for p in self.model.parameters()),
            "optimizer_groups": len(self.optimizer.param_groups),
        }


def measure(arch: str, batch: int, warmup: int, repeats: int, seed: int) -> dict:
    torch.manual_seed(seed)
    base = create_model(arch)
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(batch, *base.input_shape, generator=g)
    target = torch.randint(0, base.num_classes, (batch,), generator=g)
    loops = {}
    for name, (cls, kwargs) in METHODS.items():
        loops[name] = Loop(base, cls, kwargs, inputs, target)
    losses: dict[str, list[float]] = {name: [] for name in loops}
    for name, loop in loops.items():  # warm-up (also initializes LSQ's activation steps, EMA ranges)
        for _ in range(warmup):
            losses[name].append(loop.step())
    times: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            losses[name].append(loops[name].step())
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    methods = {}
    for name, loop in loops.items():
        ratio = median[name] / median["float"]
        methods[name] = {
            **loop.info(),
            "settings": METHODS[name][1],
            "seconds_per_step": median[name],
            "seconds_min": min(times[name]),
            "ratio_vs_float": ratio,
            "within_goal": ratio <= GOAL,
            "first_loss": losses[name][0] if losses[name] else None,
            "last_loss": losses[name][-1] if losses[name] else None,
        }
    return {
        "arch": arch,
        "batch_size": batch,
        "warmup": warmup,
        "repeats": repeats,
        "goal_ratio": GOAL,
        "methods": methods,
        "pact_over_dorefa": median["pact_a4_w4"] / median["dorefa_a8_w4"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/qat_overhead.json")
    parser.add_argument("--arch", default="resnet20_cifar")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=15, help="timed steps per method (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.warmup = 8, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load,
        "quick": args.quick,
        "case": measure(args.arch, args.batch, args.warmup, args.repeats, args.seed),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    case = results["case"]
    print(
        f"{case['arch']} batch {case['batch_size']}, threads {results['threads']}, median of {case['repeats']} "
        f"steps after {case['warmup']} warm-up (goal <= {GOAL}x float)"
    )
    print(f"{'method':<20} {'ms/step':>9} {'x float':>8}  goal")
    for name, m in case["methods"].items():
        print(
            f"{name:<20} {m['seconds_per_step'] * 1e3:>9.1f} {m['ratio_vs_float']:>8.2f}  "
            f"{'ok' if m['within_goal'] else 'MISSED'}"
        )
    print(f"PACT / DoReFa: {case['pact_over_dorefa']:.2f}x")
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
