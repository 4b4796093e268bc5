"""The whole compression pipeline in one call (``distiller pipeline``, ``make demo``).

Train a model, prune it with a structured AGP schedule, thin it, fine-tune it, quantize it to int8,
export ONNX files, and measure accuracy, size, MACs and latency of each step in PyTorch and ONNX
Runtime: :func:`run_pipeline` with a :class:`PipelineConfig`, printed by :func:`render_table`.
:func:`measure_latency` / :func:`time_blocks` time models fairly (also used by the benchmarks).
"""

from distiller.pipeline.config import DATASET_DEFAULTS, QUANTIZATION_MODES, PipelineConfig, default_schedule
from distiller.pipeline.latency import cpu_cores, measure_latency, time_blocks
from distiller.pipeline.report import PipelineReport, render_stage_times, render_table
from distiller.pipeline.run import run_pipeline

__all__ = [
    "DATASET_DEFAULTS",
    "QUANTIZATION_MODES",
    "PipelineConfig",
    "PipelineReport",
    "cpu_cores",
    "default_schedule",
    "measure_latency",
    "render_stage_times",
    "render_table",
    "run_pipeline",
    "time_blocks",
]
