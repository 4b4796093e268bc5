"""The loss LAPQ minimizes: ``eval_fn(model)`` over a fixed subset of calibration batches.

Batches can be kept in memory (``memoize=True``). :mod:`distiller.quantization.lapq` re-exports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError

__all__ = ["lapq_eval_fn"]

# -- evaluation function ------------------------------------------------------------------------


def lapq_eval_fn(
    loader: Iterable[Any],
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: str | torch.device = "cpu",
    max_batches: int | None = None,
    memoize: bool = False,
) -> Callable[[nn.Module], float]:
    """``eval_fn(model) -> mean loss`` over the first ``max_batches`` ``(inputs, targets)`` batches of
    ``loader`` (the LAPQ objective; the loader must give the same batches every time).

    ``memoize`` keeps those batches in memory on ``device`` after the first call (the original's
    ``--lapq-eval-memoize-dataloader``): no data loading in the thousands of evaluations of a search.
    The loss is the sample-weighted mean of ``criterion`` (which must average over its batch).
    """
    if max_batches is not None and max_batches < 1:
        raise ConfigError(f"lapq_eval_fn: max_batches must be a positive count; got {max_batches}.")
    cache: list[tuple[Any, torch.Tensor]] = []
    cached = [False]

    def batches() -> Iterable[tuple[Any, torch.Tensor]]:
        if cached[0]:
            yield from cache
            return
        cache.clear()
        for index, batch in enumerate(loader):
            if max_batches is not None and index >= max_batches:
                break
            if not isinstance(batch, (list, tuple)) or len(batch) < 2:
                raise ConfigError(f"lapq_eval_fn: batch {index} is not an (inputs, targets) pair.")
            inputs, targets = batch[0], batch[1]
            inputs = [x.to(device) for x in inputs] if isinstance(inputs, (list, tuple)) else inputs.to(device)
            item = (inputs, targets.to(device))
            if memoize:
                cache.append(item)
            yield item
        cached[0] = memoize

    def eval_fn(model: nn.Module) -> float:
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        try:
            with torch.no_grad():
                for inputs, targets in batches():
                    out = model(*inputs) if isinstance(inputs, list) else model(inputs)
                    n = int(targets.shape[0]) if targets.dim() else 1
                    total += float(criterion(out, targets)) * n
                    count += n
        finally:
            model.train(was_training)
        if count == 0:
            raise ConfigError("lapq_eval_fn: the loader gave no batches.")
        return total / count

    return eval_fn
