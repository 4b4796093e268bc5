"""Sensitivity analysis spread over worker processes.

Every (parameter, level) evaluation is independent, so N processes evaluate N levels at once. The
choices that make this safe and exact:

* **spawn**, not fork: forking a process after torch has started its thread pools can deadlock
  the child (and fork is unavailable on macOS/Windows anyway).
* The model, the units, the levels and ``test_func`` are pickled **once** into bytes and sent to
  each worker when it starts, not with every task; each worker restores its own private copy
  (workers prune their copy in place, so the tensors must not be shared memory). Tasks are index
  pairs.
* Each worker gets ``max(1, torch.get_num_threads() // workers)`` intra-op threads, so N workers
  do not oversubscribe the cores the parent would have used.
* Every task runs the same function as the serial analysis
  (:func:`~distiller.analysis.sensitivity.run_task`), and results are put back in analysis order,
  so a deterministic ``test_func`` gives the serial table exactly.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from distiller.analysis.sensitivity import Progress, Result, SensitivityUnit, run_task
from distiller.errors import ConfigError

__all__ = ["parallel_results", "worker_threads"]

log = logging.getLogger(__name__)

# The worker's copy of (model, units, levels, group, test_func), set by _init_worker.
_STATE: tuple[Any, ...] | None = None


def worker_threads(workers: int, available: int | None = None) -> int:
    """Intra-op threads per worker: the parent's threads shared out, at least one."""
    available = torch.get_num_threads() if available is None else available
    return max(1, available // max(1, workers))


def _payload(model: nn.Module, units, levels, group: str, test_func: Callable) -> bytes:
    try:
        return pickle.dumps((model, list(units), list(levels), group, test_func), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError) as err:
        raise ConfigError(
            f"Sensitivity workers receive the model and test_func by pickling, which failed: {err}. Use a "
            "picklable test_func (distiller.analysis.CachedEvaluation, or a module-level function), a model "
            "without lambda hooks, or workers=1 (--sense-workers 1)."
        ) from err


def _init_worker(payload: bytes, threads: int) -> None:
    global _STATE
    torch.set_num_threads(threads)
    _STATE = pickle.loads(payload)


def _evaluate(task: tuple[int, int]) -> tuple[tuple[int, int], Result]:
    assert _STATE is not None, "worker not initialized"
    model, units, levels, group, test_func = _STATE
    return task, run_task(model, units, levels, group, test_func, task)


def parallel_results(
    model: nn.Module,
    units: Sequence[SensitivityUnit],
    levels: Sequence[float],
    group: str,
    test_func: Callable[[nn.Module], Result],
    tasks: Sequence[tuple[int, int]],
    workers: int,
    progress: Progress | None = None,
) -> dict[tuple[int, int], Result]:
    """Evaluate ``tasks`` (see :func:`~distiller.analysis.sensitivity.analysis_tasks`) in ``workers``
    spawned processes; returns ``{task: (top1, top5, loss)}``.

    Raises:
        ConfigError: the model or ``test_func`` cannot be pickled.
    """
    workers = min(workers, len(tasks))
    payload = _payload(model, units, levels, group, test_func)
    threads = worker_threads(workers)
    log.info(
        "Starting %d sensitivity worker(s), %d thread(s) each (%.1f MiB sent to each)",
        workers,
        threads,
        len(payload) / 2**20,
    )
    context = torch.multiprocessing.get_context("spawn")
    results: dict[tuple[int, int], Result] = {}
    with context.Pool(workers, initializer=_init_worker, initargs=(payload, threads)) as pool:
        done: Iterable = pool.imap_unordered(_evaluate, list(tasks), chunksize=1)
        if progress is not None:
            done = progress(done, len(tasks), f"sensitivity ({group}, {workers} workers)")
        for task, result in done:
            results[tuple(task)] = result
    return results
