"""``run_pipeline``: train, prune, thin, fine-tune, quantize, export and measure, in one call.

Stages, each timed (:attr:`PipelineReport.stage_seconds`):

1. ``dense``: train the architecture from scratch;
2. ``prune``: structured AGP under the YAML schedule (filters zeroed gradually, masks kept);
3. ``thin``: remove the zeroed filters and the channels that read them (a smaller dense model);
4. ``fine-tune``: train the thinned model to recover accuracy;
5. ``int8``: post-training quantization (or QAT, when it does better) of the thinned model;
6. ``export``: ONNX files of the dense, thinned and int8 models;
7. ``measure``: accuracy in PyTorch and ONNX Runtime, sizes, MACs, latency.

Every file goes under ``run_dir``: ``dense``/``thinned``/``int8`` ``.pth.tar`` and ``.onnx``, and
``pipeline.json`` (the report).
"""

from __future__ import annotations

import contextlib
import dataclasses
import platform
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from distiller.data import load_data
from distiller.determinism import seed_everything
from distiller.pipeline.config import PipelineConfig
from distiller.pipeline.int8 import quantize_int8, save_int8
from distiller.pipeline.measure import measure_models
from distiller.pipeline.report import PipelineReport
from distiller.pipeline.stages import RunContext, finetune, prune, save_onnx, thin, train_dense
from distiller.pipeline.training import Trainer, progress_log

__all__ = ["run_pipeline"]


class _StageClock:
    """Times named stages and logs each one's end."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        progress_log.info("[%s] started", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        progress_log.info("[%s] done in %.1fs", name, self.seconds[name])


def _context(config: PipelineConfig, run_dir: Path) -> RunContext:
    seed_everything(config.seed)
    loaders = load_data(
        config.dataset,
        config.data_dir,
        batch_size=config.batch_size,
        workers=config.workers,
        validation_split=config.validation_split,
        effective_train_size=config.train_size,
        effective_valid_size=config.valid_size,
        effective_test_size=config.test_size,
        deterministic=True,
        seed=config.seed,
    )
    trainer = Trainer(loaders, config.seed, config.weight_decay)
    example = next(iter(loaders.test))[0][:1]
    return RunContext(config, run_dir, trainer, example)


def _environment(config: PipelineConfig) -> dict[str, object]:
    import onnxruntime

    from distiller.pipeline.latency import cpu_cores

    return {
        "threads": config.threads,
        "cpu_cores": cpu_cores(),
        "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def run_pipeline(config: PipelineConfig, run_dir: str | Path) -> PipelineReport:
    """Run every stage (module docstring) and write ``pipeline.json`` under ``run_dir``.

    Args:
        config: the settings; fields left ``None`` take the dataset's defaults.
        run_dir: an existing folder for the run's files.

    Returns:
        The report (:func:`~distiller.pipeline.report.render_table` prints it).

    Raises:
        ConfigError: bad settings (unknown dataset, missing data folder, a schedule longer than the
            pruning stage, ...); DataError: unreadable data; ExportError: ``onnx``/``onnxruntime`` missing.
    """
    from distiller.export.onnx_runtime import require_onnxruntime

    config = config.resolved()
    require_onnxruntime()  # fail before training, not after
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config, Path(run_dir))
    finally:
        torch.set_num_threads(previous_threads)


def _run(config: PipelineConfig, run_dir: Path) -> PipelineReport:
    ctx = _context(config, run_dir)
    clock = _StageClock()
    with clock("dense"):
        dense = train_dense(ctx)
    with clock("prune"):
        pruned = prune(ctx, dense)
    with clock("thin"):
        thinning = thin(ctx, pruned)
    with clock("fine-tune"):
        thinned = finetune(ctx, pruned.model)
    with clock("int8"):
        int8 = quantize_int8(ctx, thinned)
    with clock("export"):
        files = {
            "dense": save_onnx(ctx, dense, "dense"),
            "thinned": save_onnx(ctx, thinned, "thinned"),
            "int8": save_int8(ctx, int8, thinned),
        }
    with clock("measure"):
        rows, deployed = measure_models(ctx, dense, thinned, int8.model, files)
    report = PipelineReport(
        config=dataclasses.asdict(config),
        rows=rows,
        final=deployed,
        test_images=len(ctx.trainer.loaders.test.sampler),  # type: ignore[arg-type]
        int8_method=int8.method,
        int8_valid_top1=int8.valid_top1,
        calibration_images=int8.calibration_images,
        thinning=dataclasses.asdict(thinning),
        sparsity=pruned.sparsity,
        stage_seconds=clock.seconds,
        environment=_environment(config),
        saved=ctx.saved,
    )
    report.saved.append(report.write_json(ctx.run_dir / "pipeline.json"))
    return report
