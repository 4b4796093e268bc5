#!/usr/bin/env python3
"""Training throughput (images/s) of 1 process against N DDP processes, with compression active.

Every configuration trains the same model on random data with an AGP element-wise pruning policy
on every conv/linear weight (masks re-applied after each step through the scheduler hooks), at the
same *global* batch (``-b`` semantics of ``distiller classify``: split among the processes):

* ``1 process``: a plain single-process loop using all ``--threads`` CPU threads (or one GPU);
* ``N processes``: ``torchrun --nproc_per_node N``, one thread each on CPU (torchrun's default
  ``OMP_NUM_THREADS=1``) or one GPU each, through ``RewrappingDDP`` and ``SynchronizedScheduler``.

Each worker also times the consistency guarantee: one broadcast of every mask with its weight from
rank 0 (what a pruning step costs on top of DDP), and the per-step cost of the synchronized hooks
when no mask changes.

    python benchmarks/ddp_scaling.py --out benchmarks/results/ddp_scaling.json            # CPU
    python benchmarks/ddp_scaling.py --device cuda --nproc 1 2 4 8 --arch resnet50 \\
        --batch 256 --out benchmarks/results/ddp_scaling_gpu.json                         # GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn


def prunable_weights(model: nn.Module) -> list[str]:
    return [name for name, p in model.named_parameters() if p.dim() in (2, 4)]


def agp_schedule(weights: list[str]) -> dict:
    return {
        "version": 1,
        "pruners": {
            "agp": {
                "class": "AutomatedGradualPruner",
                "initial_sparsity": 0.05,
                "final_sparsity": 0.8,
                "weights": weights,
            }
        },
        "policies": [{"pruner": {"instance_name": "agp"}, "starting_epoch": 0, "ending_epoch": 10, "frequency": 1}],
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(args: argparse.Namespace) -> None:
    """One process of a configuration; rank 0 writes the figures to ``args.result_file``."""
    from distiller.config import dict_config
    from distiller.distributed import barrier, init_distributed, launch_env, shutdown
    from distiller.distributed.consistency import broadcast_changed_masks, parameter_lookup
    from distiller.distributed.scheduler import SynchronizedScheduler
    from distiller.distributed.wrapper import RewrappingDDP
    from distiller.models import create_model

    env = launch_env()
    world = env.world_size if env else 1
    rank = env.rank if env else 0
    if args.device == "cuda":
        device = torch.device("cuda", env.local_rank if env else 0)
        torch.backends.cudnn.benchmark = True
    else:
        device = torch.device("cpu")
        if env is None:
            torch.set_num_threads(args.threads)
    if env is not None:
        init_distributed(env, device, timeout_s=600)
    torch.manual_seed(0)
    model = create_model(args.arch, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scheduler = dict_config(model, optimizer, agp_schedule(prunable_weights(model)))
    if env is not None:
        train_model, hooks = RewrappingDDP(model, device), SynchronizedScheduler(scheduler)
    else:
        train_model, hooks = model, scheduler
    criterion = nn.CrossEntropyLoss()
    per_process = args.batch // world
    generator = torch.Generator().manual_seed(rank)
    inputs = torch.randn(per_process, *model.input_shape, generator=generator).to(device)
    target = torch.randint(0, model.num_classes, (per_process,), generator=generator).to(device)
    hooks.on_epoch_begin(0, optimizer)
    train_model.train()

    def step(i: int) -> None:
        hooks.on_minibatch_begin(0, i, 10**6, optimizer)
        loss = criterion(train_model(inputs), target)
        loss = hooks.before_backward_pass(0, i, 10**6, loss, optimizer)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        hooks.before_parameter_optimization(0, i, 10**6, optimizer)
        optimizer.step()
        hooks.on_minibatch_end(0, i, 10**6, optimizer)

    for i in range(args.warmup):
        step(i)
    rounds = []
    for r in range(args.rounds):
        barrier()
        _sync(device)
        start = time.perf_counter()
        for i in range(args.steps):
            step(args.warmup + r * args.steps + i)
        _sync(device)
        barrier()
        rounds.append(time.perf_counter() - start)
    seconds = statistics.median(rounds)
    result = {
        "processes": world,
        "threads_per_process": torch.get_num_threads() if device.type == "cpu" else None,
        "device": str(device.type),
        "global_batch": per_process * world,
        "per_process_batch": per_process,
        "seconds_per_step": seconds / args.steps,
        "images_per_second": per_process * world * args.steps / seconds,
    }
    if env is not None:  # the cost of the consistency guarantee
        names = [n for n, m in scheduler.masks.items() if m.mask is not None]
        lookup = parameter_lookup(model, getattr(scheduler, "_masker_for", None))
        timings = []
        for _ in range(5):
            barrier()
            _sync(device)
            start = time.perf_counter()
            broadcast_changed_masks(scheduler.masks, names, lookup)
            _sync(device)
            timings.append(time.perf_counter() - start)
        hook_timings = []
        for _ in range(5):
            start = time.perf_counter()
            for i in range(100):
                hooks.on_minibatch_end(0, i, 10**6, optimizer)
            hook_timings.append((time.perf_counter() - start) / 100)
        raw = []
        for _ in range(5):
            start = time.perf_counter()
            for i in range(100):
                scheduler.on_minibatch_end(0, i, 10**6, optimizer)
            raw.append((time.perf_counter() - start) / 100)
        result["mask_broadcast"] = {
            "masks": len(names),
            "mask_and_weight_bytes": sum(2 * scheduler.masks[n].mask.numel() * 4 for n in names),
            "seconds": statistics.median(timings),
            "fraction_of_a_step": statistics.median(timings) / result["seconds_per_step"],
        }
        result["minibatch_end_hook_seconds"] = {
            "synchronized": statistics.median(hook_timings),
            "plain": statistics.median(raw),
        }
    if rank == 0:
        Path(args.result_file).write_text(json.dumps(result))
    if env is not None:
        shutdown()


def run_configuration(args: argparse.Namespace, nproc: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        common = [
            __file__,
            "--worker",
            "--result-file",
            str(result_file),
            "--arch",
            args.arch,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            "--warmup",
            str(args.warmup),
            "--rounds",
            str(args.rounds),
            "--device",
            args.device,
            "--threads",
            str(threads),
        ]
        env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
        if nproc == 1:
            command = [sys.executable, *common]
        else:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc_per_node={nproc}",
                *common,
            ]
        subprocess.run(command, check=True, env=env)
        return json.loads(result_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet20_cifar")
    parser.add_argument("--batch", type=int, default=128, help="global batch (split among the processes)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="CPU threads of the single-process run (DDP processes use one each)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs of every configuration (the best is kept)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    configurations = [(n, args.threads if n == 1 else 1) for n in args.nproc]
    if args.device == "cpu" and args.threads > 1 and 1 in args.nproc:
        configurations.insert(1, (1, 1))  # the per-process compute of the DDP runs, for comparison
    # Repeats cycle through the configurations, so that load from other jobs hits all of them alike.
    runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configurations}
    for _ in range(args.repeats):
        for nproc, threads in configurations:
            runs[(nproc, threads)].append(run_configuration(args, nproc, threads))
    results = []
    for measured in runs.values():
        best = dict(max(measured, key=lambda r: r["images_per_second"]))
        best["images_per_second_all_repeats"] = [r["images_per_second"] for r in measured]
        results.append(best)
    base = results[0]["images_per_second"]
    for r in results:
        r["speedup_vs_first"] = r["images_per_second"] / base
    report = {
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "gpus": torch.cuda.device_count() if args.device == "cuda" else 0,
        "arch": args.arch,
        "global_batch": args.batch,
        "load_average_at_end": os.getloadavg(),
        "configurations": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
