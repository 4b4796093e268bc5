"""What the pipeline reports of each model: accuracy in each engine, size, compute and latency.

The three models are measured alike: parameters and MACs per image from the summaries
(:mod:`distiller.summary`, the counts ``--summary compute`` prints), the size of the ONNX file plus
any external-data file it references, test top-1 in PyTorch and of the ONNX file in ONNX Runtime,
and the latency of one batch (:func:`~distiller.pipeline.latency.measure_latency`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from distiller.apps.loops import EvalResult
from distiller.export.onnx_runtime import OnnxRuntimeModel
from distiller.pipeline.latency import measure_latency
from distiller.pipeline.stages import RunContext
from distiller.summary import compute_summary, total_macs

__all__ = ["ModelRecord", "latency_batch", "measure_models", "onnx_bytes"]


@dataclass
class ModelRecord:
    """One row of the pipeline's table.

    Attributes:
        name: ``dense``, ``pruned+thinned`` or ``int8``.
        params: parameter elements of the float model (int8 stores the same count in a byte each).
        macs: multiply-accumulates per image.
        onnx: the ONNX file.
        onnx_bytes: its size plus that of its external-data files.
        top1: test top-1 by engine (``torch_fp32``, ``torch_int8_sim``, ``ort_fp32``, ``ort_int8``).
        latency_ms: median milliseconds per batch by engine (same keys).
    """

    name: str
    params: int
    macs: int
    onnx: Path
    onnx_bytes: int
    top1: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)


def onnx_bytes(path: Path) -> int:
    """Bytes of an ONNX file and of the external-data files its tensors point to."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return path.stat().st_size + sum((path.parent / loc).stat().st_size for loc in locations)


def _counts(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    return sum(p.numel() for p in model.parameters()), total_macs(compute_summary(model, example[:1]))


def latency_batch(ctx: RunContext) -> torch.Tensor:
    """``latency_batch`` test images (the test set repeated if it is smaller)."""
    size = ctx.config.latency_batch
    images: list[torch.Tensor] = []
    while sum(len(x) for x in images) < size:
        images.extend(x for x, _ in ctx.trainer.loaders.test)
    return torch.cat(images)[:size].contiguous()


def measure_models(
    ctx: RunContext, dense: nn.Module, thinned: nn.Module, int8: nn.Module, files: dict[str, Path]
) -> tuple[list[ModelRecord], EvalResult]:
    """Measure the dense, thinned and int8 models (``files``: their ONNX files by the same keys).

    Returns:
        The three rows, and the test evaluation of the deployed int8 model (ONNX Runtime).
    """
    c = ctx.config
    sessions = {key: OnnxRuntimeModel(path, threads=c.threads) for key, path in files.items()}
    rows = []
    for key, name, model in (("dense", "dense", dense), ("thinned", "pruned+thinned", thinned)):
        params, macs = _counts(model, ctx.example)
        top1 = {"torch_fp32": ctx.trainer.test(model).top1, "ort_fp32": ctx.trainer.test(sessions[key]).top1}
        rows.append(ModelRecord(name, params, macs, files[key], onnx_bytes(files[key]), top1))
    deployed = ctx.trainer.test(sessions["int8"])
    top1 = {"torch_int8_sim": ctx.trainer.test(int8).top1, "ort_int8": deployed.top1}
    rows.append(ModelRecord("int8", rows[1].params, rows[1].macs, files["int8"], onnx_bytes(files["int8"]), top1))
    timed = {
        ("dense", "torch_fp32"): dense,
        ("dense", "ort_fp32"): sessions["dense"],
        ("pruned+thinned", "torch_fp32"): thinned,
        ("pruned+thinned", "ort_fp32"): sessions["thinned"],
        ("int8", "ort_int8"): sessions["int8"],
    }
    ms = measure_latency(
        {f"{row}/{engine}": m for (row, engine), m in timed.items()},
        latency_batch(ctx),
        threads=c.threads,
        warmup=c.latency_warmup,
        repeats=c.latency_repeats,
        rounds=c.latency_rounds,
    )
    for row in rows:
        row.latency_ms = {engine: ms[f"{r}/{engine}"] for r, engine in timed if r == row.name}
    return rows, deployed
