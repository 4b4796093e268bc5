#!/usr/bin/env python3
"""CPU latency of int8 ONNX Runtime models against FP32 PyTorch and FP32 ONNX Runtime, in one run.

For each model (``resnet20_cifar`` from the zoo on 32x32 inputs; torchvision ``resnet50`` and
``mobilenet_v2`` on 224x224, random weights) and batch size, the median milliseconds per batch of:

* ``torch_fp32``: PyTorch eager, eval, ``torch.inference_mode``;
* ``ort_fp32``: the model exported by ``export_img_classifier_to_onnx`` (no softmax) in ONNX Runtime;
* ``ort_int8``: the baseline, ONNX Runtime's own static quantizer on that file
  (``quant_pre_process``, then ``quantize_static`` in QDQ format, per-channel int8 weights, uint8
  activations, MinMax calibration; ``reduce_range`` off, since x86 CPUs with VNNI/AMX do not saturate);
* ``ours_int8``: Distiller's int8 path, ``distiller.quantization.quantize`` then
  ``distiller.quantization.export_onnx`` (skipped, with a note, while that API is missing or fails).

ORT sessions use the CPU execution provider, ``ORT_ENABLE_ALL`` and ``--threads`` intra-op threads
(default: all cores); PyTorch uses as many. Each variant is timed in its own block (warm-up, then
``--repeats`` runs, median), with a pause between blocks: the thread pools of PyTorch (OpenMP) and ORT
spin-wait after each run, and interleaving them would let one steal the cores of the other. Reported
per model and batch: ms/batch, speed-up vs PyTorch FP32 (``torch_ms / ms``), vs ORT FP32, and ours vs
the ORT quantizer (``ort_int8_ms / ours_ms``; > 1: ours is faster). Also: file sizes, the kernels ORT's
optimizer runs in each int8 graph (``QLinearConv`` where Q/DQ groups were fused into int8 convolutions,
``Conv`` where they were not), and the output error of each ONNX file against PyTorch FP32 on one batch
(test images where there are, else calibration-like random images).

Calibration: ``resnet20_cifar`` uses 1,000 CIFAR-10 training images (evaluation transforms) when
``../shared/data/cifar10`` is present, and then also reports top-1 on 2,000 test images of every
variant, with the trained dense checkpoint of the original Distiller when present; other models (and
resnet20 without the data) calibrate on a few batches of standard-normal images, the distribution of
normalized inputs. Random-weight torchvision models get BatchNorm statistics measured on random images
(see :func:`recalibrate_batchnorm`) and give latency only.

    python benchmarks/int8_speedup.py --out benchmarks/results/int8_speedup.json
    python benchmarks/int8_speedup.py --quick   # few repeats: checks that the script runs
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import build_torchvision  # the benchmarks folder is on sys.path (not a package)
from torch import nn

from distiller.apps.loops import evaluate
from distiller.export import export_img_classifier_to_onnx
from distiller.export.onnx_runtime import OnnxRuntimeModel, optimized_op_types, quantize_static_onnx
from distiller.models import create_model
from distiller.pipeline.int8 import INT8_PTQ_CONFIG
from distiller.pipeline.latency import cpu_cores, time_blocks

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CIFAR10_DIR = SHARED_DATA / "cifar10"
DENSE_CHECKPOINT = SHARED_DATA / "distiller-checkpoints" / "checkpoint_trained_dense.pth.tar"
MODELS = ("resnet20_cifar", "resnet50", "mobilenet_v2")
VARIANTS = ("torch_fp32", "ort_fp32", "ort_int8", "ours_int8")

# Distiller's post-training quantization matching the baseline: 8-bit, per-channel symmetric int8 weights,
# asymmetric uint8 activations, min/max ranges (the settings of `distiller pipeline`).
OURS_CONFIG = INT8_PTQ_CONFIG


def ours_int8_onnx(model: nn.Module, calib_batches: list[tuple[torch.Tensor, torch.Tensor]], path: Path) -> Path:
    """Distiller's int8 ONNX file for ``model`` (a copy is quantized), calibrated on ``calib_batches``
    (``(inputs, targets)`` pairs, what a DataLoader yields)."""
    from distiller.quantization import export_onnx, quantize

    quantized = quantize(model, OURS_CONFIG, calib_batches)  # a quantized copy
    return export_onnx(quantized, path, calib_batches[0][0][:1])


def build(name: str, args: argparse.Namespace) -> tuple[nn.Module, tuple[int, int, int], str]:
    """The model (eval), its input shape, and where its weights come from."""
    torch.manual_seed(args.seed)
    if name == "resnet20_cifar":
        model = create_model(name, "cifar10")
        weights = "random"
        if args.checkpoint and Path(args.checkpoint).exists():
            from distiller.checkpoint import load_checkpoint

            load_checkpoint(args.checkpoint, model)
            weights = str(args.checkpoint)
        return model.eval(), tuple(model.input_shape), weights
    model = build_torchvision(name)
    recalibrate_batchnorm(model, (3, 224, 224), args)
    return model, (3, 224, 224), "random, BatchNorm statistics from random images"


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, shape: tuple[int, ...], args: argparse.Namespace) -> None:
    """BatchNorm running statistics of a random-weight model measured on random images (cumulative
    average), so that its activations keep unit scale as a trained model's do. With fresh statistics
    (mean 0, var 1) they shrink about tenfold every few layers (1e-9 at the end of MobileNetV2), which
    makes int8 ranges meaningless and drifts FP32 kernels towards denormals."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(args.seed + 3)
    for _ in range(4):
        model(torch.randn(8, *shape, generator=generator))
    model.eval()


def cifar_loaders(args: argparse.Namespace):
    """CIFAR-10 test subset and calibration loader, or ``None`` without the data."""
    if not (CIFAR10_DIR / "train").is_dir() or args.no_data:
        return None
    from distiller.data import load_data

    loaders = load_data(
        "cifar10", CIFAR10_DIR, batch_size=100, workers=0, effective_test_size=args.accuracy_images, seed=args.seed
    )
    return loaders.test, loaders.calibration_loader(args.calibration_images)


def random_calibration(shape: tuple[int, ...], args: argparse.Namespace) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(args.seed + 1)
    return [
        (torch.randn(args.calib_batch_size, *shape, generator=generator), torch.zeros(args.calib_batch_size).long())
        for _ in range(args.calib_batches)
    ]


def relative_error(output: torch.Tensor, reference: torch.Tensor) -> float:
    return float((output - reference).abs().max() / reference.abs().max())


def measure(name: str, args: argparse.Namespace, folder: Path) -> dict:
    model, shape, weights = build(name, args)
    data = cifar_loaders(args) if name == "resnet20_cifar" else None
    if data is not None:
        calib = [(x, y) for x, y in data[1]]
        calibration = f"{sum(len(x) for x, _ in calib)} CIFAR-10 training images"
    else:
        calib = random_calibration(shape, args)
        calibration = f"{len(calib)} batches of {args.calib_batch_size} standard-normal images"
    inputs = [x for x, _ in calib]
    files = {"ort_fp32": folder / f"{name}_fp32.onnx", "ort_int8": folder / f"{name}_ort_int8.onnx"}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    export_img_classifier_to_onnx(model, files["ort_fp32"], example_input=torch.randn(1, *shape), add_softmax=False)
    seconds["export"] = time.perf_counter() - start
    start = time.perf_counter()
    quantize_static_onnx(files["ort_fp32"], files["ort_int8"], inputs)
    seconds["ort_quantize"] = time.perf_counter() - start
    notes = []
    try:
        start = time.perf_counter()
        files["ours_int8"] = ours_int8_onnx(model, calib, folder / f"{name}_ours_int8.onnx")
        seconds["ours_quantize_export"] = time.perf_counter() - start
    except ImportError as e:
        notes.append(f"ours_int8 skipped: distiller.quantization.quantize/export_onnx not importable ({e})")
    except Exception as e:  # the API is being written: report, and measure the rest
        notes.append(f"ours_int8 skipped: {type(e).__name__}: {' '.join(str(e).split())[:300]}")
    for note in notes:
        print(f"note: {name}: {note}", file=sys.stderr)

    sessions = {v: OnnxRuntimeModel(p, threads=args.threads, optimization="all") for v, p in files.items()}
    models: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"torch_fp32": model, **sessions}
    if data is not None:  # test images: random ones are far from what the ranges were calibrated on
        check = next(iter(data[0]))[0][:32]
    else:
        check = torch.randn(16, *shape, generator=torch.Generator().manual_seed(args.seed + 2))
    with torch.inference_mode():
        reference = model(check)
    fidelity = {}
    for variant, session in sessions.items():
        output = session(check)
        fidelity[variant] = {
            "max_rel_error": relative_error(output, reference),
            "top1_agreement": float((output.argmax(1) == reference.argmax(1)).float().mean()),
        }

    accuracy = None
    if data is not None:
        criterion = nn.CrossEntropyLoss()
        accuracy = {"images": len(data[0].sampler), "weights": weights, "calibration": calibration}
        for variant, m in models.items():
            accuracy[variant] = evaluate(m, data[0], criterion, progress=False).top1

    batches = {}
    for batch in args.batches:
        x = torch.randn(batch, *shape, generator=torch.Generator().manual_seed(args.seed + batch))
        x_numpy = x.numpy()
        runners: dict[str, Callable[[], object]] = {"torch_fp32": lambda x=x: model(x)}
        for variant, session in sessions.items():
            runners[variant] = lambda s=session, a=x_numpy: s.run_numpy(a)  # NumPy in and out: no tensor wrapping
        with torch.inference_mode():
            ms = time_blocks(runners, args.warmup, args.repeats)
        row = {
            "ms": ms,
            "speedup_vs_torch_fp32": {v: ms["torch_fp32"] / t for v, t in ms.items() if v != "torch_fp32"},
            "speedup_vs_ort_fp32": {v: ms["ort_fp32"] / t for v, t in ms.items() if v.endswith("int8")},
        }
        if "ours_int8" in ms:
            row["ours_vs_ort_int8"] = ms["ort_int8"] / ms["ours_int8"]
        batches[str(batch)] = row
    int8_ops = {}
    for variant in ("ort_int8", "ours_int8"):
        if variant in files:
            ops = optimized_op_types(files[variant])
            int8_ops[variant] = dict(sorted(ops.items(), key=lambda kv: -kv[1]))
    return {
        "model": name,
        "input_shape": list(shape),
        "weights": weights,
        "calibration": calibration,
        "file_mb": {v: p.stat().st_size / 2**20 for v, p in files.items()},
        "optimized_int8_ops": int8_ops,
        "fidelity_vs_torch_fp32": fidelity,
        "accuracy_top1": accuracy,
        "seconds": seconds,
        "notes": notes,
        "batches": batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/int8_speedup.json")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ",".join(MODELS))
    parser.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per variant and batch size")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=cpu_cores(), help="PyTorch and ORT intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib-batches", type=int, default=4, help="random calibration batches (no real data)")
    parser.add_argument("--calib-batch-size", type=int, default=8)
    parser.add_argument("--calibration-images", type=int, default=1000, help="CIFAR-10 training images (resnet20)")
    parser.add_argument("--accuracy-images", type=int, default=2000, help="CIFAR-10 test images (resnet20)")
    parser.add_argument("--checkpoint", default=str(DENSE_CHECKPOINT), help="resnet20_cifar weights, when present")
    parser.add_argument("--no-data", action="store_true", help="calibrate resnet20 on random images, no accuracy")
    parser.add_argument("--keep", default=None, help="keep the ONNX files in this folder")
    parser.add_argument("--quick", action="store_true", help="few repeats, to check that the script runs")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    if args.quick:
        args.warmup, args.repeats = 1, 3
    torch.set_num_threads(args.threads)
    import onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        cases = [measure(name, args, folder) for name in models]
    results = {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "python": platform.python_version(),
        "processor": platform.processor() or platform.machine(),
        "cpu_cores": cpu_cores(),
        "threads": args.threads,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "quick": args.quick,
        "cases": cases,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    print(f"threads {args.threads}, median of {args.repeats} runs after {args.warmup} warm-up; ms per batch")
    header = f"{'model':<16} {'batch':>5} " + " ".join(f"{v:>10}" for v in VARIANTS)
    print(header + f" {'int8/torch':>10} {'int8/ortfp':>10} {'ours/ort8':>9}")
    for case in cases:
        for batch, row in case["batches"].items():
            ms = row["ms"]
            cells = " ".join(f"{ms[v]:>10.2f}" if v in ms else f"{'-':>10}" for v in VARIANTS)
            ours = f"{row['ours_vs_ort_int8']:>9.2f}" if "ours_vs_ort_int8" in row else f"{'-':>9}"
            print(
                f"{case['model']:<16} {batch:>5} {cells} {row['speedup_vs_torch_fp32']['ort_int8']:>10.2f} "
                f"{row['speedup_vs_ort_fp32']['ort_int8']:>10.2f} {ours}"
            )
    for case in cases:
        for variant, ops in case["optimized_int8_ops"].items():
            kernels = ", ".join(f"{k} {v}" for k, v in ops.items())
            print(f"{case['model']}: {variant} graph as ORT runs it: {kernels} (float Conv: {ops.get('Conv', 0)})")
        if case["accuracy_top1"]:
            acc = case["accuracy_top1"]
            tops = ", ".join(f"{v} {acc[v]:.2f}" for v in VARIANTS if v in acc)
            print(f"{case['model']}: top-1 on {acc['images']} CIFAR-10 test images ({acc['calibration']}): {tops}")
        for note in case["notes"]:
            print(f"{case['model']}: {note}")
    print(f"Saved: {out}")


if __name__ == "__main__":
    main()
