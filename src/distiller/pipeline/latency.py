"""Fair CPU latency of PyTorch models and ONNX Runtime sessions on one batch.

Two thread pools on the same cores spoil each other's timings: PyTorch's (OpenMP) and ONNX Runtime's
threads spin-wait for a while after every run, so interleaving single runs of two engines lets one
steal the cores of the other. Each model is therefore timed in its own *block*: a pause (the previous
pool goes idle), warm-up runs, then timed runs. On a busy machine a block can fall into a quiet or a
noisy stretch, so :func:`time_blocks` repeats the sequence of blocks ``rounds`` times and reports the
median over all timed runs of a model: noise then hits every model alike.

PyTorch runs under ``torch.inference_mode`` and ONNX Runtime sessions take NumPy arrays directly
(:meth:`~distiller.export.onnx_runtime.OnnxRuntimeModel.run_numpy`), so neither pays for conversions
the other does not. Both use the same number of intra-op threads.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Mapping

import torch
from torch import nn

__all__ = ["cpu_cores", "measure_latency", "time_blocks"]


def cpu_cores() -> int:
    """The cores this process may run on (its CPU affinity on Linux; ``os.cpu_count()`` elsewhere)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def time_blocks(
    runners: Mapping[str, Callable[[], object]],
    warmup: int,
    repeats: int,
    *,
    rounds: int = 1,
    pause: float = 0.3,
) -> dict[str, float]:
    """Median milliseconds per call of each runner, each timed in its own block (module docstring).

    Args:
        runners: name -> a callable that runs one batch.
        warmup: untimed calls at the start of every block.
        repeats: timed calls per block.
        rounds: how many times the sequence of blocks runs; the median is over all timed calls.
        pause: seconds of sleep before every block, for the previous thread pool to go idle.
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            time.sleep(pause)
            for _ in range(warmup):
                run()
            for _ in range(repeats):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def measure_latency(
    models: Mapping[str, nn.Module],
    batch: torch.Tensor,
    *,
    threads: int | None = None,
    warmup: int = 3,
    repeats: int = 10,
    rounds: int = 3,
) -> dict[str, float]:
    """Median milliseconds to run ``batch`` through each model (CPU), with :func:`time_blocks`.

    Args:
        models: name -> a PyTorch model (run in eval mode) or an
            :class:`~distiller.export.onnx_runtime.OnnxRuntimeModel` (run on NumPy arrays). ORT sessions
            get their threads when they are created: create them with the same ``threads``.
        batch: the input batch (moved to the CPU).
        threads: PyTorch intra-op threads meanwhile (default: :func:`cpu_cores`); restored afterwards.
        warmup, repeats, rounds: see :func:`time_blocks`.
    """
    from distiller.export.onnx_runtime import OnnxRuntimeModel

    batch = batch.detach().cpu()
    array = batch.numpy()
    runners: dict[str, Callable[[], object]] = {}
    for name, model in models.items():
        if isinstance(model, OnnxRuntimeModel):
            runners[name] = lambda m=model: m.run_numpy(array)
        else:
            model.eval()
            runners[name] = lambda m=model: m(batch)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or cpu_cores())
    try:
        with torch.inference_mode():
            return time_blocks(runners, warmup, repeats, rounds=rounds)
    finally:
        torch.set_num_threads(previous)
