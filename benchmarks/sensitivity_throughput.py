#!/usr/bin/env python3
"""Throughput of sensitivity analysis: one process with all threads against worker processes.

ResNet-20 (CIFAR-10; the original's dense checkpoint when present) is analysed element-wise at the
levels ``arange(0, 0.5, 0.05)`` on a fixed subset of the CIFAR-10 test set (random CIFAR-shaped data
when ``../shared/data/cifar10`` is absent; the JSON says which). The same analysis runs twice in one
process of this script:

* ``serial``: ``workers=1``, ``torch.get_num_threads()`` intra-op threads;
* ``parallel``: ``--workers`` spawned processes with ``threads // workers`` threads each (the wall
  time includes starting them: importing torch and unpickling the model and the data).

Both read the same decoded batches (:class:`~distiller.analysis.CachedEvaluation`), so the ratio
measures only how the evaluations are spread. The JSON records evaluations/s, images/s, the
parallel/serial throughput ratio, the wall time of the full serial analysis, and whether both
tables are identical.

    python benchmarks/sensitivity_throughput.py --out benchmarks/results/sensitivity_throughput.json
    python benchmarks/sensitivity_throughput.py --levels 2 --params 2 --images 200 --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from distiller.analysis import CachedEvaluation, perform_sensitivity_analysis, sensitivity_levels, sensitivity_params
from distiller.analysis.sensitivity import analysis_tasks
from distiller.analysis.sensitivity_workers import worker_threads
from distiller.models import create_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR10_DIR = SHARED_DATA / "cifar10"
DENSE_CHECKPOINT = SHARED_DATA / "distiller-checkpoints" / "checkpoint_trained_dense.pth.tar"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def build_model(checkpoint: str) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = create_model("resnet20_cifar", "cifar10")
    if checkpoint and Path(checkpoint).exists():
        from distiller.checkpoint import load_checkpoint

        load_checkpoint(checkpoint, model)
        return model.eval(), checkpoint
    return model.eval(), "random (checkpoint absent)"


def evaluation_data(args: argparse.Namespace) -> tuple[CachedEvaluation, str]:
    """The decoded evaluation subset, and where it comes from."""
    if (CIFAR10_DIR / "test").is_dir() and not args.no_data:
        from distiller.data import load_data

        loaders = load_data(
            "cifar10",
            CIFAR10_DIR,
            batch_size=args.batch_size,
            workers=0,
            effective_test_size=args.images,
            seed=0,
            test_only=True,
        )
        return CachedEvaluation.from_loader(loaders.test), f"CIFAR-10 test subset ({CIFAR10_DIR})"
    generator = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, args.images, args.batch_size):
        n = min(args.batch_size, args.images - start)
        inputs = torch.randn(n, 3, 32, 32, generator=generator)
        batches.append((inputs, torch.randint(0, 10, (n,), generator=generator)))
    return CachedEvaluation(batches), "random CIFAR-shaped data (../shared/data/cifar10 absent or --no-data)"


def timed_analysis(model, params, levels, evaluation, workers: int) -> tuple[dict, float]:
    start = time.perf_counter()
    table = perform_sensitivity_analysis(model, params, levels, evaluation, "element", workers=workers)
    return table, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/sensitivity_throughput.json")
    parser.add_argument("--levels", type=int, default=10, help="first N levels of arange(0, 0.5, 0.05) (default 10)")
    parser.add_argument("--params", type=int, default=None, help="first N analysed weights (default: all 20)")
    parser.add_argument("--images", type=int, default=2000, help="evaluation images (default 2000)")
    parser.add_argument("--workers", type=int, default=2, help="processes of the parallel run (default 2)")
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--checkpoint", default=str(DENSE_CHECKPOINT))
    parser.add_argument("--no-data", action="store_true", help="use random data even when CIFAR-10 is present")
    args = parser.parse_args()

    model, weights = build_model(args.checkpoint)
    evaluation, data = evaluation_data(args)
    levels = sensitivity_levels(0.0, 0.5, 0.05)[: args.levels]
    params = sensitivity_params(model, "element")[: args.params]
    evaluations = len(analysis_tasks(len(params), levels))
    threads = torch.get_num_threads()

    serial, serial_s = timed_analysis(model, params, levels, evaluation, 1)
    parallel, parallel_s = timed_analysis(model, params, levels, evaluation, args.workers)

    def rates(seconds: float, processes: int, threads_each: int) -> dict:
        return {
            "processes": processes,
            "threads_per_process": threads_each,
            "wall_s": seconds,
            "evaluations_per_s": evaluations / seconds,
            "images_per_s": evaluations * evaluation.num_samples / seconds,
        }

    results = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_cores": cpu_cores(),
        "model": "resnet20_cifar",
        "weights": weights,
        "data": data,
        "images": evaluation.num_samples,
        "group": "element",
        "levels": levels,
        "parameters": len(params),
        "evaluations": evaluations,
        "dense_top1": next(iter(serial.values()))[0.0][0] if 0.0 in levels else None,
        "serial": rates(serial_s, 1, threads),
        "parallel": rates(parallel_s, args.workers, worker_threads(args.workers, threads)),
        "parallel_over_serial_throughput": serial_s / parallel_s,
        "full_serial_analysis_wall_s": serial_s,
        "identical_tables": parallel == serial,
        "note": "parallel wall time includes spawning the workers; serial ran first, then parallel",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(
        f"{len(params)} weights x {len(levels)} levels = {evaluations} evaluations of {evaluation.num_samples} "
        f"images ({data})"
    )
    for kind in ("serial", "parallel"):
        r = results[kind]
        print(
            f"{kind}: {r['processes']} process(es) x {r['threads_per_process']} thread(s): {r['wall_s']:.1f} s, "
            f"{r['evaluations_per_s']:.3f} evaluations/s, {r['images_per_s']:.0f} images/s"
        )
    print(
        f"parallel / serial throughput: {results['parallel_over_serial_throughput']:.2f}x; "
        f"identical tables: {results['identical_tables']}"
    )
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
