"""The pipeline's result: one table (dense -> pruned+thinned -> int8), its notes, and its JSON form.

The table's headers avoid the word ``Top1``: scripts take the last line containing it as the result
line (DESIGN §7), which the CLI prints after the table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from distiller.apps.loops import EvalResult
from distiller.fileio import atomic_output
from distiller.pipeline.measure import ModelRecord

__all__ = ["PipelineReport", "render_stage_times", "render_table"]

ENGINES = (("torch_fp32", "PyTorch FP32"), ("ort_fp32", "ORT FP32"), ("ort_int8", "ORT int8"))
"""Latency columns: engine key, header (milliseconds per batch)."""


@dataclass
class PipelineReport:
    """Everything a run measured.

    Attributes:
        config: the resolved settings (:class:`~distiller.pipeline.PipelineConfig` as a dict).
        rows: dense, pruned+thinned and int8, in that order.
        final: the test evaluation of the deployed int8 model in ONNX Runtime (its result line ends the output).
        test_images: how many test images the accuracies are measured on.
        int8_method: ``ptq`` or ``qat``; ``int8_valid_top1``: the candidates' validation top-1.
        calibration_images: training images that calibrated the int8 ranges.
        thinning: what thinning removed and how the thinned model agreed with the masked one.
        sparsity: the sparsity summary of the pruned model, before thinning.
        stage_seconds: wall time of each stage.
        environment: threads, versions.
        saved: files written under the log dir.
    """

    config: dict[str, Any]
    rows: list[ModelRecord]
    final: EvalResult
    test_images: int
    int8_method: str
    int8_valid_top1: dict[str, float]
    calibration_images: int
    thinning: dict[str, Any]
    sparsity: pd.DataFrame
    stage_seconds: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    def row(self, name: str) -> ModelRecord:
        return next(r for r in self.rows if r.name == name)

    @property
    def int8_speedup(self) -> float:
        """ONNX Runtime FP32 over int8 latency of the same thinned model."""
        return self.row("pruned+thinned").latency_ms["ort_fp32"] / self.row("int8").latency_ms["ort_int8"]

    def to_dict(self) -> dict[str, Any]:
        from distiller.summary import total_sparsity

        return {
            "config": self.config,
            "rows": [{**dataclasses.asdict(r), "onnx": str(r.onnx)} for r in self.rows],
            "final": {"top1": self.final.top1, "top5": self.final.top5, "loss": self.final.loss},
            "test_images": self.test_images,
            "int8_method": self.int8_method,
            "int8_valid_top1": self.int8_valid_top1,
            "calibration_images": self.calibration_images,
            "int8_vs_fp32_ort_speedup": self.int8_speedup,
            "thinning": self.thinning,
            "total_sparsity": total_sparsity(self.sparsity),
            "sparsity": self.sparsity.to_dict(orient="records"),
            "stage_seconds": self.stage_seconds,
            "environment": self.environment,
            "saved": [str(p) for p in self.saved],
        }

    def write_json(self, path: Path) -> Path:
        """Write :meth:`to_dict` atomically; return ``path``."""
        with atomic_output(path, "pipeline JSON") as tmp:
            Path(tmp).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 1024**2 else f"{n / 1024**2:.2f} MiB"


def _deployed_top1(row: ModelRecord) -> float:
    return row.top1["ort_int8"] if "ort_int8" in row.top1 else row.top1["torch_fp32"]


def render_table(report: PipelineReport) -> str:
    """The pipeline table (GitHub markdown), then notes on what each number is."""
    from tabulate import tabulate

    dense = report.row("dense")
    base = dense.latency_ms["ort_fp32"]
    rows = []
    for r in report.rows:
        ms = [f"{r.latency_ms[e]:.2f}" if e in r.latency_ms else "-" for e, _ in ENGINES]
        fastest = min(v for e, v in r.latency_ms.items() if e.startswith("ort"))
        rows.append(
            [r.name, f"{_deployed_top1(r):.2f}", f"{r.params:,}", f"{r.macs:,}", _size(r.onnx_bytes), *ms,
             f"{base / fastest:.2f}x"]
        )  # fmt: skip
    headers = ["model", "top-1 %", "params", "MACs", "ONNX size", *(f"{h} ms" for _, h in ENGINES), "speed-up"]
    table = tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
    thinned, int8 = report.row("pruned+thinned"), report.row("int8")
    cfg = report.config
    method = {
        "ptq": "post-training quantization",
        "qat": f"quantization-aware training ({cfg['qat_epochs']} epochs)",
    }[report.int8_method]
    tried = ", ".join(f"{k} {v:.2f}" for k, v in report.int8_valid_top1.items())
    notes = [
        f"top-1: {report.test_images} test images; float rows in PyTorch (ONNX Runtime: dense "
        f"{dense.top1['ort_fp32']:.2f}, thinned {thinned.top1['ort_fp32']:.2f}); int8 in ONNX Runtime "
        f"(PyTorch simulation: {int8.top1['torch_int8_sim']:.2f}).",
        f"latency: ms per batch of {cfg['latency_batch']}, median of {cfg['latency_rounds']} x "
        f"{cfg['latency_repeats']} runs, {cfg['threads']} thread(s) in PyTorch and ONNX Runtime (CPU); "
        "speed-up: dense ORT FP32 over the row's ORT latency.",
        f"int8 vs FP32 of the same thinned model in ONNX Runtime: {thinned.latency_ms['ort_fp32']:.2f} -> "
        f"{int8.latency_ms['ort_int8']:.2f} ms ({report.int8_speedup:.2f}x faster).",
        f"int8: Distiller's {method} (distiller.quantization), per-channel int8 weights, uint8 activations, "
        f"{report.calibration_images} calibration images; exported by distiller.quantization.export_onnx "
        f"(QDQ; ONNX Runtime fuses it into QLinearConv/QGemm). Validation top-1: {tried}.",
        f"thinning removed {report.thinning['removed_channels']} channels in {report.thinning['groups']} groups; "
        f"test top-1 masked {report.thinning['masked_top1']:.2f} -> thinned {report.thinning['thinned_top1']:.2f} "
        f"before fine-tuning ({report.thinning['agreement'] * 100:.1f}% same predictions).",
    ]
    return table + "\n\n" + "\n".join(f"* {n}" for n in notes)


def render_stage_times(report: PipelineReport) -> str:
    """``Stages: dense 41.2s, prune 9.0s, ... (total 80.1s)``."""
    parts = ", ".join(f"{k} {v:.1f}s" for k, v in report.stage_seconds.items())
    return f"Stages: {parts} (total {sum(report.stage_seconds.values()):.1f}s)"
