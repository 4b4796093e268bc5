"""Accuracy against rank for one layer: the table that tells which rank to pick.

Each rank is tried on a deep copy of the model, so the model passed in is never changed and every
row is independent of the others (no fine-tuning between ranks: the table measures the
approximation itself, as the original's TSVD notebook did).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.low_rank.cost import break_even_rank, check_method, dense_cost, full_rank
from distiller.low_rank.replace import layer_input_shapes, low_rank_decompose
from distiller.low_rank.spec import LayerSpec, resolve_layers
from distiller.naming import normalize_module_name

__all__ = ["SWEEP_COLUMNS", "rank_sweep"]

SWEEP_COLUMNS = ("rank", "params", "macs", "top1", "top5", "loss", "energy", "model_params")


def _scores(result: Any) -> tuple[float, float, float]:
    """``(top1, top5, loss)`` from a tuple, a mapping, or an object with those attributes."""
    if isinstance(result, Mapping):
        return float(result["top1"]), float(result["top5"]), float(result["loss"])
    if all(hasattr(result, a) for a in ("top1", "top5", "loss")):
        return float(result.top1), float(result.top5), float(result.loss)
    if isinstance(result, (tuple, list)) and len(result) >= 3:
        return float(result[0]), float(result[1]), float(result[2])
    raise ConfigError(
        f"test_fn must return (top1, top5, loss), a mapping or an object with top1/top5/loss; got {result!r}."
    )


def rank_sweep(
    model: nn.Module,
    layer_name: str,
    ranks: Iterable[int],
    test_fn: Callable[[nn.Module], Any],
    *,
    method: str | None = None,
    split: str = "sqrt",
    example_input: torch.Tensor | None = None,
    dense: bool = True,
) -> pd.DataFrame:
    """Factorize ``layer_name`` at each rank (on a copy) and evaluate the model.

    Args:
        model: the trained model (left unchanged).
        layer_name: a Linear or Conv2d layer, as ``named_modules()`` spells it.
        ranks: the ranks to try, each in [1, full rank].
        test_fn: ``test_fn(model) -> (top1, top5, loss)`` (or an object/mapping with those), the
            original's sensitivity-analysis convention; e.g. a closure over
            :func:`distiller.apps.loops.evaluate`.
        method: ``linear``, ``channel`` or ``spatial`` (default: the layer's own default).
        split: where the singular values go (does not change the function, only the factors).
        example_input: an input batch for convolution MACs (default: ``model.input_shape``).
        dense: also evaluate the unfactorized model, stored in ``df.attrs["dense"]``.

    Returns:
        One row per rank with :data:`SWEEP_COLUMNS`: ``params`` and ``macs`` are the factorized
        layer's, ``model_params`` the whole model's. ``df.attrs`` holds ``layer``, ``method``,
        ``full_rank``, ``break_even_rank``, and with ``dense`` the dense layer's
        ``{params, macs, top1, top5, loss, model_params}``.

    Raises:
        ConfigError: an unknown layer, an unsupported layer or method, a rank out of range (checked
            for all ranks before any evaluation).
    """
    name = normalize_module_name(layer_name)
    real_name, layer = resolve_layers(model, [LayerSpec(name, method=method)])[name]
    method = check_method(layer, method, name)
    ranks = list(ranks)
    if not ranks:
        raise ConfigError("ranks is empty; give the ranks to try, e.g. [5, 10, 20].")
    top = full_rank(layer, method)
    for rank in ranks:
        resolve_layers(model, [LayerSpec(name, rank=rank, method=method)])
    shape = layer_input_shapes(model, {real_name: layer}, example_input).get(real_name)
    rows = []
    for rank in ranks:
        trial = copy.deepcopy(model)
        report = low_rank_decompose(
            trial, {name: {"rank": rank, "method": method}}, example_input=example_input, split=split
        )
        entry = report[name]
        top1, top5, loss = _scores(test_fn(trial))
        rows.append(
            [rank, entry.params_after, entry.macs_after, top1, top5, loss, entry.energy, report.model_params_after]
        )
    df = pd.DataFrame(rows, columns=list(SWEEP_COLUMNS))
    df.attrs.update(layer=name, method=method, full_rank=top, break_even_rank=break_even_rank(layer, method, shape))
    if dense:
        cost = dense_cost(layer, shape)
        top1, top5, loss = _scores(test_fn(model))
        df.attrs["dense"] = {
            "params": cost.params,
            "macs": cost.macs,
            "top1": top1,
            "top5": top5,
            "loss": loss,
            "model_params": sum(p.numel() for p in model.parameters()),
        }
    return df
