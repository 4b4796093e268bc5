#!/usr/bin/env python3
"""Which torchvision classification models distiller can prune structurally and thin exactly, against Torch-Pruning.

For every model of ``torchvision.models.list_models(module=torchvision.models)`` (random weights,
eval mode, input 1x3x224x224, 299x299 for inception_v3):

* capture: does ``torch.fx.symbolic_trace`` work, does ``torch.export.export`` work;
* distiller: randomize the normalization layers (statistics and affine parameters) and every
  constant-initialized parameter, mask ``--fraction`` of the channels of every prunable coupled
  group (producer filters and consumer channels, ranked by ``--criterion``), thin, and compare the
  thinned model's output with the masked model's on a fresh input. A model *passes* when at least
  90% of its conv/linear layers (the final classifier excepted) belong to a group that lost channels,
  its parameters drop by at least 30%, and the maximum absolute difference is at most 1e-5 of the
  maximum absolute reference output;
* Torch-Pruning (``pip install -r requirements-bench.txt``): its L1 magnitude pruner at the same
  ratio, per layer, the final classifier ignored; counted as run when pruning raises nothing and the
  pruned model still produces the right output shape (it does not preserve the function, so there is
  no equivalence to check).

Each model runs in its own subprocess (memory is freed between models, a crash or a ``--timeout``
costs one row). Results are written after every model as JSON.

    python benchmarks/thinning_coverage.py --out benchmarks/results/thinning_coverage.json
    python benchmarks/thinning_coverage.py --models resnet18,mobilenet_v2 --skip-torch-pruning
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from _common import (  # the benchmarks folder is on sys.path (not a package)
    CONV_LINEAR,
    build_torchvision,
    check_thinning,
    count_params,
    torch_pruning_prune,
    torchvision_input,
)

MIN_COVERAGE = 0.9
MIN_PARAM_REDUCTION = 0.3
TOLERANCE = 1e-5
NUM_CLASSES = 1000


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


# --- workers (one model, in a subprocess) ------------------------------------------------------------------


def distiller_worker(name: str, args: argparse.Namespace, save) -> None:
    row: dict = {"model": name}
    model = build_torchvision(name)
    x = torchvision_input(name)
    row["input"] = list(x.shape)
    start = time.perf_counter()
    try:
        torch.fx.symbolic_trace(model)
        row["trace_fx"] = True
    except Exception as e:
        row["trace_fx"], row["trace_fx_error"] = False, first_line(e)
    row["trace_fx_seconds"] = time.perf_counter() - start
    if args.skip_export or name in args.skip_export_models:
        row["export"] = None  # not tried
    else:
        start = time.perf_counter()
        try:
            with torch.no_grad():
                torch.export.export(model, (x,))
            row["export"] = True
        except Exception as e:
            row["export"], row["export_error"] = False, first_line(e)
        row["export_seconds"] = time.perf_counter() - start
    save(row)
    try:
        check = check_thinning(model, x, fraction=args.fraction, criterion=args.criterion, seed=args.seed)
    except Exception as e:
        row.update(passed=False, reasons=[first_line(e)], traceback=traceback.format_exc(limit=-4))
    else:
        reasons = check.failures(MIN_COVERAGE, MIN_PARAM_REDUCTION, TOLERANCE)
        row.update(check.as_dict(), passed=not reasons, reasons=reasons)
    row["peak_rss_gib"] = peak_rss_gib()
    save(row)


def torch_pruning_worker(name: str, args: argparse.Namespace, save) -> None:
    row: dict = {"model": name}
    torch.manual_seed(args.seed)
    model = build_torchvision(name)
    x = torchvision_input(name)
    # TP's own recipe ignores every layer with one output per class (aux heads included).
    ignored = [m for m in model.modules() if isinstance(m, CONV_LINEAR)
               and getattr(m, "out_features", getattr(m, "out_channels", None)) == NUM_CLASSES]
    row["params_before"] = count_params(model)
    start = time.perf_counter()
    try:
        torch_pruning_prune(model, x, ignored, ratio=args.fraction)
        row["seconds"] = time.perf_counter() - start
        with torch.inference_mode():
            out = model.eval()(x)
        if tuple(out.shape) != (1, NUM_CLASSES):
            raise RuntimeError(f"output shape {tuple(out.shape)}")
    except Exception as e:
        row.update(ran=False, error=first_line(e))
    else:
        row["ran"] = True
    row["params_after"] = count_params(model)
    row["param_reduction"] = 1 - row["params_after"] / row["params_before"]
    row["peak_rss_gib"] = peak_rss_gib()
    save(row)


def run_worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    if args.worker == "torch-pruning" and args.tp_memory_gib:
        limit = int(args.tp_memory_gib * 2**30)  # address space: Python + torch alone take about 4 GiB
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    result = Path(args.result)

    def save(row: dict) -> None:
        result.write_text(json.dumps(row, indent=1, default=str))

    worker = distiller_worker if args.worker == "distiller" else torch_pruning_worker
    worker(args.models, args, save)


# --- driver ----------------------------------------------------------------------------------------------


def spawn(kind: str, name: str, args: argparse.Namespace, threads: int) -> dict:
    """Run one worker in a subprocess; its row, or a failure row when it died or timed out."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "row.json"
        cmd = [sys.executable, __file__, "--worker", kind, "--models", name, "--result", str(result),
               "--threads", str(threads), "--fraction", str(args.fraction), "--criterion", args.criterion,
               "--seed", str(args.seed), "--skip-export-models", ",".join(args.skip_export_models),
               "--tp-memory-gib", str(args.tp_memory_gib)]
        if args.skip_export:
            cmd.append("--skip-export")
        start = time.perf_counter()
        try:
            timeout = args.timeout if kind == "distiller" else args.tp_timeout
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            died = None if proc.returncode == 0 else f"worker exited with {proc.returncode}: " + \
                " | ".join(proc.stderr.strip().splitlines()[-2:])[:300]
        except subprocess.TimeoutExpired:
            died = f"timed out after {timeout:.0f} s"
        row = json.loads(result.read_text()) if result.exists() else {"model": name}
        row["wall_seconds"] = time.perf_counter() - start
    if died is not None:
        if kind == "distiller":
            row.update(passed=False, reasons=[*row.get("reasons", []), died])
        else:
            row.update(ran=False, error=died)
    return row


def fmt_m(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f}"


def table_row(name: str, d: dict, tp: dict | None) -> str:
    flag = {True: "ok", False: "FAIL", None: "-"}
    cov = f"{d['coverage']:.0%}" if "coverage" in d else "-"
    params = (f"{fmt_m(d['params_before'])}->{fmt_m(d['params_after'])} (-{d['param_reduction']:.0%})"
              if "param_reduction" in d else "-")
    macs = f"{d['macs_before'] / 1e9:.2f}->{d['macs_after'] / 1e9:.2f}" if "macs_after" in d else "-"
    err = f"{d['max_rel_error']:.1e}" if "max_rel_error" in d else "-"
    groups = f"{d['prunable']}/{d['groups']}" if "groups" in d else "-"
    tp_cell = "-" if tp is None else (f"ok -{tp['param_reduction']:.0%}" if tp.get("ran") else "FAIL")
    reason = "; ".join(d.get("reasons", []))[:110]
    return (f"{name:<20} {flag[d.get('trace_fx')]:>4} {flag[d.get('export')]:>6} {groups:>7} {cov:>5} "
            f"{params:>24} {macs:>13} {err:>8} {('PASS' if d.get('passed') else 'fail'):>5} {tp_cell:>9}  {reason}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=None, help="comma-separated subset (default: every classification model)")
    parser.add_argument("--skip-torch-pruning", action="store_true")
    parser.add_argument("--skip-export", action="store_true", help="do not try torch.export (recorded as not tried)")
    parser.add_argument("--skip-export-models", default="",
                        help="comma-separated models for which torch.export is not tried (time)")
    parser.add_argument("--out", default="benchmarks/results/thinning_coverage.json")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--criterion", default="l1", choices=("l1", "l2", "random"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="models run in parallel (threads split among them)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (default: cores / jobs)")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per model for distiller")
    parser.add_argument("--tp-timeout", type=float, default=180.0,
                        help="seconds per model for Torch-Pruning (it hangs on Swin: its own benchmark skips them)")
    parser.add_argument("--tp-memory-gib", type=float, default=12.0,
                        help="address-space limit of a Torch-Pruning worker (it exhausts 24 GiB on maxvit_t); 0: none")
    parser.add_argument("--worker", choices=("distiller", "torch-pruning"), help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.skip_export_models = [m for m in args.skip_export_models.split(",") if m]
    if args.worker:
        run_worker(args)
        return

    import torchvision

    names = args.models.split(",") if args.models else torchvision.models.list_models(module=torchvision.models)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    with_tp = not args.skip_torch_pruning
    if with_tp:
        try:
            import torch_pruning
        except ImportError:
            sys.exit("Torch-Pruning is not installed: pip install -r requirements-bench.txt, or --skip-torch-pruning")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "torch_pruning": torch_pruning.__version__ if with_tp else None,
        "python": platform.python_version(), "cpu_count": os.cpu_count(), "threads_per_worker": threads,
        "jobs": args.jobs, "fraction": args.fraction, "criterion": args.criterion, "seed": args.seed,
        "criteria": {"min_coverage": MIN_COVERAGE, "min_param_reduction": MIN_PARAM_REDUCTION,
                     "tolerance": TOLERANCE},
        "models": {},
    }
    header = (f"{'model':<20} {'fx':>4} {'export':>6} {'groups':>7} {'cov':>5} {'params M':>24} "
              f"{'GMACs':>13} {'rel err':>8} {'pass':>5} {'TP':>9}  reason")
    print(header, flush=True)
    started = time.perf_counter()

    def one(name: str) -> tuple[str, dict]:
        entry = {"distiller": spawn("distiller", name, args, threads)}
        if with_tp:
            entry["torch_pruning"] = spawn("torch-pruning", name, args, threads)
        return name, entry

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for name, entry in pool.map(one, names):
            results["models"][name] = entry
            print(table_row(name, entry["distiller"], entry.get("torch_pruning")), flush=True)
            out.write_text(json.dumps(results, indent=1, default=str))

    rows = results["models"].values()
    passed = sum(1 for e in rows if e["distiller"].get("passed"))
    fx_ok = sum(1 for e in rows if e["distiller"].get("trace_fx"))
    export_ok = sum(1 for e in rows if e["distiller"].get("export"))
    export_tried = sum(1 for e in rows if e["distiller"].get("export") is not None)
    results["totals"] = {"models": len(names), "distiller_pass": passed, "trace_fx": fx_ok,
                         "export": export_ok, "export_tried": export_tried,
                         "seconds": time.perf_counter() - started}
    summary = f"distiller: {passed}/{len(names)} pass"
    if with_tp:
        tp_ran = sum(1 for e in rows if e["torch_pruning"].get("ran"))
        results["totals"]["torch_pruning_run"] = tp_ran
        summary += f"; torch-pruning: {tp_ran}/{len(names)} run"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"{summary}  (torch.fx traces {fx_ok}/{len(names)}, torch.export {export_ok}/{export_tried} tried)")
    failures = [(n, e["distiller"].get("reasons", [])) for n, e in results["models"].items()
                if not e["distiller"].get("passed")]
    if failures:
        print("distiller failures:")
        for n, reasons in failures:
            print(f"  {n}: {'; '.join(reasons)}")
    if with_tp:
        tp_failures = [(n, e["torch_pruning"].get("error", "")) for n, e in results["models"].items()
                       if not e["torch_pruning"].get("ran")]
        if tp_failures:
            print("torch-pruning failures:")
            for n, error in tp_failures:
                print(f"  {n}: {error}")
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
