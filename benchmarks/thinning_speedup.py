#!/usr/bin/env python3
"""CPU latency of thinned models against their dense originals, next to the MAC reduction.

For each model (``resnet56_cifar`` on 32x32 inputs, torchvision ``resnet50`` on 224x224): mask
``--fraction`` of the channels of every prunable coupled group (L1 group ranking, producer filters and
consumer channels), thin, and time the dense and the thinned model in the same run at batch 32 and
batch 1 (eval, ``torch.inference_mode``, warm-up, then ``--rounds`` rounds that time each model once in
rotating order so machine noise hits all alike; the median is reported). With Torch-Pruning installed
(``pip install -r requirements-bench.txt``) its L1 magnitude pruner at the same ratio (per layer, final
classifier ignored) is timed alongside. Reported per pruned model: MAC ratio (dense / pruned), parameter
ratio, speed-up (dense latency / pruned latency), and speed-up / MAC ratio (1.0: latency falls as much
as the MACs).

    python benchmarks/thinning_speedup.py --out benchmarks/results/thinning_speedup.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from _common import (  # the benchmarks folder is on sys.path (not a package)
    apply_masks,
    count_params,
    coupled_masks,
    final_classifiers,
    torch_pruning_prune,
)

from distiller.graph import ModelGraph
from distiller.graph.coupling import channel_coupling
from distiller.models import create_model
from distiller.thinning.api import thin_model

CASES = [("resnet56_cifar", "cifar10"), ("torchvision.resnet50", "imagenet")]


def prune_distiller(model: torch.nn.Module, example: torch.Tensor, fraction: float) -> dict:
    """Mask ``fraction`` of every prunable group, thin in place; the masked model's output error."""
    graph = ModelGraph(model, example[:1], allow_fallback=False)
    coupling = channel_coupling(graph)
    masks = coupled_masks(model, coupling, fraction, "l1")
    apply_masks(model, masks)
    with torch.inference_mode():
        reference = model(example)
    start = time.perf_counter()
    report = thin_model(model, masks, example=example[:1])
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        error = float((model(example) - reference).abs().max() / reference.abs().max())
    return {"groups": len(coupling.groups), "prunable": len(coupling.prunable), "pruned_groups": len(report.removed),
            "removed_channels": report.num_removed, "thin_seconds": seconds, "max_rel_error": error}


def measure(arch: str, dataset: str, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    dense = create_model(arch, dataset).eval()
    example = torch.randn(2, *dense.input_shape, generator=torch.Generator().manual_seed(args.seed))
    dense_graph = ModelGraph(dense, example[:1], allow_fallback=False)
    models = {"dense": dense}
    info: dict[str, dict] = {"dense": {}}

    thinned = copy.deepcopy(dense)
    info["distiller"] = prune_distiller(thinned, example, args.fraction)
    models["distiller"] = thinned
    if args.torch_pruning:
        pruned = copy.deepcopy(dense)
        classifier = [pruned.get_submodule(n) for n in final_classifiers(dense_graph)]
        start = time.perf_counter()
        torch_pruning_prune(pruned, example[:1], classifier, ratio=args.fraction)
        info["torch_pruning"] = {"prune_seconds": time.perf_counter() - start}
        models["torch_pruning"] = pruned.eval()

    for name, model in models.items():
        info[name]["params"] = count_params(model)
        info[name]["macs"] = ModelGraph(model, example[:1], allow_fallback=False).total_macs

    latency: dict[str, dict[str, float]] = {name: {} for name in models}
    for batch in args.batches:
        x = torch.randn(batch, *dense.input_shape, generator=torch.Generator().manual_seed(args.seed + batch))
        times: dict[str, list[float]] = {name: [] for name in models}
        names = list(models)
        with torch.inference_mode():
            for name in names:  # warm-up
                for _ in range(args.warmup):
                    models[name](x)
            for r in range(args.rounds):
                for name in names[r % len(names):] + names[: r % len(names)]:
                    start = time.perf_counter()
                    models[name](x)
                    times[name].append(time.perf_counter() - start)
        for name in models:
            latency[name][str(batch)] = statistics.median(times[name])

    pruned_results = {}
    for name in models:
        if name == "dense":
            continue
        macs_ratio = info["dense"]["macs"] / info[name]["macs"]
        per_batch = {}
        for batch, seconds in latency[name].items():
            speedup = latency["dense"][batch] / seconds
            per_batch[batch] = {"seconds": seconds, "speedup": speedup, "speedup_over_macs_ratio": speedup / macs_ratio}
        pruned_results[name] = {**info[name], "macs_ratio": macs_ratio,
                                "params_ratio": info["dense"]["params"] / info[name]["params"], "batches": per_batch}
    return {"arch": arch, "dataset": dataset, "input_shape": list(dense.input_shape),
            "dense": {**info["dense"], "seconds": latency["dense"]}, "pruned": pruned_results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/thinning_speedup.json")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--batches", default="32,1", help="comma-separated batch sizes")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15, help="timed runs per model and batch size")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None, help="comma-separated subset of " + ",".join(a for a, _ in CASES))
    parser.add_argument("--skip-torch-pruning", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    cases = [c for c in CASES if args.models is None or c[0] in args.models.split(",")]
    if args.quick:
        cases, args.batches, args.warmup, args.rounds = cases[:1], [2], 1, 2
    torch.set_num_threads(args.threads)
    try:
        import torch_pruning
    except ImportError:
        torch_pruning = None
    args.torch_pruning = torch_pruning is not None and not args.skip_torch_pruning
    results = {"torch": torch.__version__, "torch_pruning": torch_pruning.__version__ if args.torch_pruning else None,
               "python": platform.python_version(), "processor": platform.processor() or platform.machine(),
               "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "fraction": args.fraction,
               "warmup": args.warmup, "rounds": args.rounds,
               "cases": [measure(arch, dataset, args) for arch, dataset in cases]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"threads {results['threads']}, median of {args.rounds} runs after {args.warmup} warm-up")
    print(f"{'model':<22} {'pruned by':<14} {'batch':>5} {'dense ms':>9} {'pruned ms':>9} {'MACs x':>7} "
          f"{'params x':>8} {'speed-up':>8} {'su/MACs':>7}")
    for case in results["cases"]:
        for name, r in case["pruned"].items():
            for batch, b in r["batches"].items():
                print(f"{case['arch']:<22} {name:<14} {batch:>5} {case['dense']['seconds'][batch] * 1e3:>9.1f} "
                      f"{b['seconds'] * 1e3:>9.1f} {r['macs_ratio']:>7.2f} {r['params_ratio']:>8.2f} "
                      f"{b['speedup']:>8.2f} {b['speedup_over_macs_ratio']:>7.2f}")
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
