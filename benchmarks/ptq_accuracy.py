"""Post-training quantization accuracy of the original's dense ResNet-20 on CIFAR-10 (issue 6 figures).

For each configuration: calibrate on a fixed, seeded subset of the training split (1,000 images by
default), quantize, evaluate the simulated model on the test set, export it as int8 ONNX and evaluate
that file in ONNX Runtime on the same images; report top-1 of both, their difference, and the maximum
absolute difference of their logits. Writes JSON.

    python benchmarks/ptq_accuracy.py --out ptq_accuracy.json [--test-size 10000]

Needs ``../shared/data/cifar10`` and the original's dense checkpoint (see ``--checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from distiller.checkpoint import load_checkpoint
from distiller.data import load_data
from distiller.models import create_model
from distiller.quantization import export_onnx, quantize

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

# name -> PostTrainLinearQuantizer arguments (the CLI flags they correspond to in the comment)
CONFIGS: dict[str, dict] = {
    # --qe-mode sym --qe-per-channel --qe-clip-acts avg --qe-no-clip-layers fc
    "sym8_per_channel_avg_noclip_fc": {
        "mode": "sym",
        "per_channel_wts": True,
        "clip_acts": "AVG",
        "overrides": {"fc": {"clip_acts": "NONE"}},
    },
    # --qe-mode sym --qe-per-channel (no clipping)
    "sym8_per_channel_none": {"mode": "sym", "per_channel_wts": True},
    # --qe-mode-acts asym_u --qe-mode-wts sym --qe-per-channel: what ONNX Runtime's quantizer does (MinMax)
    "asym8_acts_sym_wts_per_channel_none": {
        "mode": {"activations": "asym_u", "weights": "sym"},
        "per_channel_wts": True,
    },
    # --qe-dynamic --qe-clip-acts avg --qe-no-clip-layers fc (the original's full-flow test 3: 91.47)
    "dynamic_sym8_avg_noclip_fc": {
        "mode": "sym",
        "clip_acts": "AVG",
        "overrides": {"fc": {"clip_acts": "NONE"}},
        "dynamic": True,
    },
    # --qe-mode asym_u --qe-bits-acts 6 --qe-bits-wts 6 --qe-per-channel --qe-clip-acts avg --qe-no-clip-layers fc
    "asym6_per_channel_avg_noclip_fc": {
        "mode": "asym_u",
        "bits_activations": 6,
        "bits_parameters": 6,
        "per_channel_wts": True,
        "clip_acts": "AVG",
        "overrides": {"fc": {"clip_acts": "NONE"}},
    },
    # --qe-mode asym_u --qe-per-channel --qe-clip-acts avg --qe-no-clip-layers fc
    "asym8_per_channel_avg_noclip_fc": {
        "mode": "asym_u",
        "per_channel_wts": True,
        "clip_acts": "AVG",
        "overrides": {"fc": {"clip_acts": "NONE"}},
    },
}


def top1_and_logits(fn, loader) -> tuple[float, np.ndarray]:  # noqa: ANN001
    correct, outputs = 0, []
    total = 0
    with torch.no_grad():
        for x, y in loader:
            out = np.asarray(fn(x))
            outputs.append(out)
            correct += int((out.argmax(1) == y.numpy()).sum())
            total += len(y)
    return 100.0 * correct / total, np.concatenate(outputs)


def ort_quantizer_top1(model, calib, test_loader) -> float:  # noqa: ANN001
    """Top-1 of ONNX Runtime's own static quantizer on the same model and calibration images (baseline)."""
    import onnxruntime as ort

    from distiller.export.onnx_runtime import quantize_static_onnx

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, Path(tmp) / "fp32.onnx", torch.randn(1, 3, 32, 32))
        int8 = quantize_static_onnx(fp32, Path(tmp) / "int8.onnx", [x for x, _ in calib])
        session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
        top1, _ = top1_and_logits(lambda x: session.run(None, {"input": x.numpy()})[0], test_loader)
    return top1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED / "cifar10"))
    dense = SHARED / "distiller-checkpoints" / "checkpoint_trained_dense.pth.tar"
    parser.add_argument("--checkpoint", default=str(dense))
    parser.add_argument("--calibration", type=int, default=1000)
    parser.add_argument("--test-size", type=int, default=10000)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--out", default="ptq_accuracy.json")
    parser.add_argument("--no-baseline", action="store_true", help="skip ONNX Runtime's own quantizer")
    args = parser.parse_args()

    import onnxruntime as ort

    model = create_model("resnet20_cifar")
    load_checkpoint(args.checkpoint, model)
    model.eval()
    loaders = load_data("cifar10", args.data, batch_size=250, effective_test_size=args.test_size)
    calib = loaders.calibration_loader(args.calibration)
    fp_top1, fp_logits = top1_and_logits(lambda x: model(x).numpy(), loaders.test)
    results = {"fp32_top1": fp_top1, "test_images": len(fp_logits), "calibration_images": args.calibration, "runs": {}}
    print(f"FP32 top-1 {fp_top1:.2f} on {len(fp_logits)} test images")
    if not args.no_baseline:
        results["onnxruntime_quantizer_top1"] = ort_quantizer_top1(model, calib, loaders.test)
        baseline = results["onnxruntime_quantizer_top1"]
        print(f"ONNX Runtime's static quantizer (QDQ, per-channel, u8/s8, MinMax): {baseline:.2f}")
    for name in args.configs:
        config = dict(CONFIGS[name])
        dynamic = config.pop("dynamic", False)
        start = time.perf_counter()
        qmodel = quantize(model, config, None if dynamic else calib, example_input=torch.randn(1, 3, 32, 32))
        sim_top1, sim_logits = top1_and_logits(lambda x, m=qmodel: m(x).numpy(), loaders.test)
        run = {"config": CONFIGS[name], "simulated_top1": sim_top1, "drop_vs_fp32": fp_top1 - sim_top1}
        if not dynamic:
            with tempfile.TemporaryDirectory() as tmp:
                path = export_onnx(qmodel, Path(tmp) / "model.onnx", torch.randn(1, 3, 32, 32))
                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                run_ort = lambda x, s=session: s.run(None, {"input": x.numpy()})[0]  # noqa: E731
                ort_top1, ort_logits = top1_and_logits(run_ort, loaders.test)
            run.update(
                onnxruntime_int8_top1=ort_top1,
                sim_minus_ort_top1=sim_top1 - ort_top1,
                max_abs_logit_diff=float(np.abs(sim_logits - ort_logits).max()),
                argmax_agreement=float((sim_logits.argmax(1) == ort_logits.argmax(1)).mean()),
            )
        run["seconds"] = time.perf_counter() - start
        results["runs"][name] = run
        print(name, json.dumps(run))
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"Saved: {args.out}")


if __name__ == "__main__":
    main()
