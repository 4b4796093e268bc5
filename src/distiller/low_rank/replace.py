"""Replacing layers of a model by their truncated-SVD factorizations, in place.

:func:`low_rank_decompose` is the one-shot entry point (the YAML extension calls it too). It checks
the whole request first, computes every factorization, and only then changes the model, so a bad
entry leaves the model untouched. It also keeps a training run consistent: the optimizer trains the
new parameters instead of the old ones, the scheduler's masks follow the new names, and the model
records what was done so that a checkpoint can be loaded back into a model built from ``arch``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from distiller.low_rank.conv import factorize_conv
from distiller.low_rank.cost import break_even_rank, check_method, dense_cost, factorized_cost, full_rank
from distiller.low_rank.handover import hand_over_masks, hand_over_optimizer
from distiller.low_rank.linear import factorize_linear
from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.record import DecompositionRecord, record_decomposition, replace_module
from distiller.low_rank.report import LayerReport, LowRankReport
from distiller.low_rank.spec import LayerSpec, parse_layers, resolve_layers
from distiller.low_rank.svd import LowRankFactors

__all__ = ["factorize_layer", "layer_input_shapes", "low_rank_decompose"]

log = logging.getLogger(__name__)


def factorize_layer(
    layer: nn.Module,
    rank: int | None = None,
    *,
    energy: float | None = None,
    method: str | None = None,
    split: str = "sqrt",
) -> tuple[FactorizedLayer, LowRankFactors]:
    """The factorized replacement of one Linear or Conv2d layer (the layer itself is not changed).

    Raises:
        ConfigError: an unsupported layer or method, neither or both of ``rank`` and ``energy``.
    """
    method = check_method(layer, method)
    if method == "linear":
        return factorize_linear(layer, rank, energy=energy, split=split)
    return factorize_conv(layer, rank, energy=energy, method=method, split=split)


def _has_input_shape(model: nn.Module) -> bool:
    return any(getattr(m, "input_shape", None) is not None for m in (model, getattr(model, "module", None)))


@torch.no_grad()
def layer_input_shapes(
    model: nn.Module, modules: Mapping[str, nn.Module], example_input: torch.Tensor | None = None
) -> dict[str, tuple[int, ...]]:
    """Per-sample input shapes of ``modules`` in one forward pass (empty when no input is known).

    The pass runs in eval mode, so batch-norm statistics and dropout are untouched; every module's
    own training flag is restored afterwards.
    """
    if example_input is None:
        if not _has_input_shape(model):
            return {}
        from distiller.graph.model_graph import example_input as make_example

        example_input = make_example(model)
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple[Any, ...]) -> None:
            if name not in shapes and inputs and isinstance(inputs[0], torch.Tensor):
                shapes[name] = tuple(inputs[0].shape[1:])

        return hook

    flags = [(m, m.training) for m in model.modules()]
    handles = [module.register_forward_pre_hook(hook_for(name)) for name, module in modules.items()]
    try:
        model.eval()
        model(example_input[:1])
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in flags:
            module.training = flag
    return shapes


def _resolved_spec(spec: LayerSpec, layer: nn.Module) -> LayerSpec:
    return LayerSpec(spec.name, spec.rank, spec.energy, check_method(layer, spec.method), spec.split)


def _report(
    name: str, layer: nn.Module, new: FactorizedLayer, factors: LowRankFactors, shape: Sequence[int] | None
) -> LayerReport:
    before = dense_cost(layer, shape)
    after = factorized_cost(layer, new.method, new.rank, shape)
    return LayerReport(
        name=name,
        type=type(layer).__name__,
        method=new.method,
        rank=new.rank,
        full_rank=full_rank(layer, new.method),
        break_even_rank=break_even_rank(layer, new.method, shape),
        energy=factors.energy,
        params_before=before.params,
        params_after=sum(p.numel() for p in new.parameters()),
        macs_before=before.macs,
        macs_after=after.macs,
    )


def _masks_of(masks: Any) -> Any:
    """Accept a scheduler (its ``masks``) or any mutable mapping of parameter names."""
    return getattr(masks, "masks", masks)


def _thinning_count(model: nn.Module) -> int:
    from distiller.thinning.plan import applied_thinning_plans

    return len(applied_thinning_plans(model))


def low_rank_decompose(
    model: nn.Module,
    layers: Mapping[str, Any],
    *,
    optimizer: torch.optim.Optimizer | None = None,
    masks: Any = None,
    example_input: torch.Tensor | None = None,
    split: str = "sqrt",
) -> LowRankReport:
    """Replace the named layers of ``model`` by rank-``k`` factorizations, in place.

    Args:
        model: the model (wrapped by DataParallel/DDP or not).
        layers: ``{name: rank | {rank: k} | {energy: f}}``, optionally with ``method``
            (``channel`` or ``spatial`` for a Conv2d; default ``channel``) and ``split``. Names as
            ``model.named_modules()`` spells them, with or without ``module.``.
        optimizer: an optimizer training ``model``: the new parameters take the old ones' places in
            its groups and start with fresh state; the old parameters leave it.
        masks: the scheduler's masks (or the scheduler): maskers of the old parameters are dropped
            and the new parameters get empty ones.
        example_input: an input batch for the MAC counts of convolutions; defaults to a random input
            of ``model.input_shape`` (models of the zoo have one). Without either, convolution MACs
            are reported as None and Linear MACs for one input row.
        split: where the singular values go for layers that do not say (``sqrt``: half to each
            factor, ``first``, ``second``).

    Returns:
        Per layer: method, rank, energy kept, parameters and MACs before and after, break-even rank.

    Raises:
        ConfigError: a malformed entry, a name the model lacks, an unsupported layer or method, a
            rank above the layer's full rank; nothing is changed then.
    """
    specs = parse_layers(layers, split=split)
    resolved = resolve_layers(model, specs)
    params_before = sum(p.numel() for p in model.parameters())
    shapes = layer_input_shapes(model, {real: module for real, module in resolved.values()}, example_input)
    planned = []
    for spec in specs:
        real_name, layer = resolved[spec.name]
        spec = _resolved_spec(spec, layer)
        new, factors = factorize_layer(layer, spec.rank, energy=spec.energy, method=spec.method, split=spec.split)
        planned.append((spec.name, real_name, layer, new, factors))
    report = LowRankReport(model_params_before=params_before)
    mask_map = _masks_of(masks)
    for name, real_name, layer, new, factors in planned:
        if optimizer is not None:
            hand_over_optimizer(optimizer, layer, new)
        replace_module(model, real_name, new)
        if mask_map is not None:
            hand_over_masks(mask_map, name, layer, new)
        record_decomposition(model, DecompositionRecord(name, new.method, new.rank, _thinning_count(model)))
        entry = _report(name, layer, new, factors, shapes.get(real_name))
        if entry.rank > entry.break_even_rank:
            log.warning(
                "%s: rank %d is above the break-even rank %d, so the factorized layer is bigger than the dense one "
                "(%d parameters instead of %d).",
                name,
                entry.rank,
                entry.break_even_rank,
                entry.params_after,
                entry.params_before,
            )
        report.layers.append(entry)
    report.model_params_after = sum(p.numel() for p in model.parameters())
    return report
