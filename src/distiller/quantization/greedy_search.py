"""Greedy search of a clip mode per layer for post-training quantization (the original's
``ptq_greedy_search``).

Layers are visited in execution (topological) order. For each, every clip mode of ``clip_modes``
(``NONE``, ``AVG``, ``GAUSS``, ``LAPLACE``) is tried on a freshly quantized copy of the model that keeps
the choices already made for the earlier layers; the mode with the best ``eval_fn`` score is kept as
an override for that layer, and the search moves on. ``Tanh`` and ``Sigmoid`` are kept in float16
(``fpq_module: 16``) as in the original; layers without an activation range of their own (max-pool,
flatten, ReLU: they pass their input's parameters on) and types the quantizer does not handle are
left to the base configuration.

The result is an ``overrides`` mapping for :class:`~distiller.quantization.PostTrainLinearQuantizer`
(``{layer name: {clip_acts: GAUSS, ...}}``), which ``resume_overrides`` accepts back: layers found in
it are not searched again, so an interrupted search continues where it stopped (``on_layer_done``
receives the overrides after every layer, e.g. to save them).
"""

from __future__ import annotations

import copy
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, GraphError, QuantizationError
from distiller.modules import BatchMatmul, Concat, EltwiseAdd, EltwiseMult, Matmul
from distiller.quantization.modes import verify_clip_mode
from distiller.quantization.quantizer import Quantizer

__all__ = ["CLIP_MODES", "FP16_TYPES", "SEARCHED_TYPES", "layers_quant_order", "ptq_greedy_search"]

log = logging.getLogger(__name__)

#: Layer types whose output range is searched.
SEARCHED_TYPES: tuple[type, ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    EltwiseAdd,
    EltwiseMult,
    Concat,
    Matmul,
    BatchMatmul,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)
#: Layer types kept in float16 (``fpq_module: 16``) instead of being searched.
FP16_TYPES: tuple[type, ...] = (nn.Tanh, nn.Sigmoid)
#: The clip modes tried for every searched layer, in this order (ties keep the earlier one).
CLIP_MODES: tuple[str, ...] = ("NONE", "AVG", "GAUSS", "LAPLACE")

_PTQ_ONLY_KEYS = ("overrides", "model_activation_stats")


def _modularized(model: nn.Module, dummy_input: Any) -> nn.Module:
    from distiller.quantization.modularize import modularize

    work = copy.deepcopy(model).eval()
    try:
        return modularize(work, dummy_input)
    except GraphError:
        return work  # the quantizer falls back to the model's modules as well


def layers_quant_order(model: nn.Module, dummy_input: Any, recurrent: bool = False) -> list[str]:
    """The module names the quantizer will see (those of the modularized model), in execution order.

    ``recurrent`` is accepted for the original's signature: the order is that of the first call of each
    module, which is well defined with recurrent connections too.
    """
    from distiller.graph import ModelGraph

    work = _modularized(model, dummy_input)
    return ModelGraph(work, dummy_input).layers_topological_order()


def _as_override(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): copy.deepcopy(v) for k, v in settings.items()}


def _combined_overrides(
    chosen: Mapping[str, Mapping[str, Any]], base_overrides: Mapping[str, Any]
) -> OrderedDict[str, Any]:
    """The searched layers' overrides first (first match wins), then the base configuration's."""
    out: OrderedDict[str, Any] = OrderedDict((name, dict(v)) for name, v in chosen.items())
    for pattern, settings in base_overrides.items():
        out.setdefault(pattern, dict(settings or {}))
    return out


def ptq_greedy_search(
    model: nn.Module,
    dummy_input: Any,
    eval_fn: Callable[[nn.Module], Any],
    calib_stats: Mapping[str, Any] | None = None,
    base_config: Mapping[str, Any] | None = None,
    recurrent: bool = False,
    clip_modes: Sequence[Any] = CLIP_MODES,
    higher_is_better: bool = True,
    layers: Iterable[str] | None = None,
    resume_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    on_layer_done: Callable[[dict[str, dict[str, Any]]], None] | None = None,
) -> tuple[nn.Module, dict[str, dict[str, Any]]]:
    """Choose a clip mode per layer, greedily in execution order (see the module docstring).

    Args:
        model: the float model (left unchanged; every candidate is quantized on a copy).
        dummy_input: a batch the model accepts.
        eval_fn: ``eval_fn(quantized_model) -> score`` (e.g. top-1 on a small subset).
        calib_stats: calibration statistics (:func:`distiller.quantization.calibrate`); default: the
            ``model_activation_stats`` of ``base_config``.
        base_config: the other ``PostTrainLinearQuantizer`` arguments (bits, mode, per-channel, overrides,
            ...); its overrides come after the searched layers' and their settings for a layer are kept
            in that layer's override.
        recurrent: accepted for the original's signature (see :func:`layers_quant_order`).
        clip_modes: the clip modes tried, in order.
        higher_is_better: ``False`` when ``eval_fn`` returns a loss.
        layers: search only these layers (default: all searched types, in execution order).
        resume_overrides: overrides of an earlier, interrupted search: their layers are not searched again.
        on_layer_done: called with the overrides chosen so far after every searched layer.

    Returns:
        ``(quantized_model, overrides)``: the model quantized with the chosen overrides, and the overrides
        (``{layer name: settings}``, layer names as used in statistics files; plain dicts, ready for
        ``yaml.safe_dump``) in search order.

    Raises:
        QuantizationError: no calibration statistics.
        ConfigError: a bad base configuration or clip mode.
    """
    from distiller.quantization.post_train import PostTrainLinearQuantizer

    base = dict(base_config or {})
    stats = base.pop("model_activation_stats", None)
    if calib_stats is not None and stats is not None:
        raise ConfigError("ptq_greedy_search: give calib_stats or base_config['model_activation_stats'], not both.")
    stats = calib_stats if calib_stats is not None else stats
    if stats is None:
        raise QuantizationError(
            "ptq_greedy_search needs calibration statistics: calibrate the model first "
            "(distiller.quantization.calibrate) and pass them as calib_stats."
        )
    if isinstance(stats, (str, bytes)) or not isinstance(stats, Mapping):
        from distiller.quantization.stats_file import load_quant_stats

        stats = load_quant_stats(stats)
    base_overrides = OrderedDict(base.pop("overrides", None) or {})
    modes = [verify_clip_mode(m).name for m in clip_modes]
    if not modes:
        raise ConfigError("ptq_greedy_search: clip_modes is empty.")
    try:
        rules = Quantizer(
            nn.Module(),
            bits_activations=base.get("bits_activations", 8),
            bits_weights=base.get("bits_parameters", 8),
            overrides=base_overrides,
        )
    except TypeError as exc:
        raise ConfigError(f"ptq_greedy_search: bad base_config ({exc}).") from exc

    def build(overrides: Mapping[str, Any]) -> nn.Module:
        try:
            quantizer = PostTrainLinearQuantizer(
                copy.deepcopy(model).eval(),
                overrides=_combined_overrides(overrides, base_overrides),
                model_activation_stats=copy.deepcopy(stats),
                **base,
            )
        except TypeError as exc:
            raise ConfigError(f"ptq_greedy_search: {exc}. Use the arguments of PostTrainLinearQuantizer.") from exc
        return quantizer.prepare_model(dummy_input).eval()

    def score(overrides: Mapping[str, Any]) -> float:
        quantized = build(overrides)
        with torch.no_grad():
            return float(eval_fn(quantized))

    def better(a: float, b: float) -> bool:
        if math.isnan(a):
            return False
        return math.isnan(b) or (a > b if higher_is_better else a < b)

    work = _modularized(model, dummy_input)
    from distiller.graph import ModelGraph

    order = ModelGraph(work, dummy_input).layers_topological_order()
    modules = {name: work.get_submodule(name) for name in order if _has_submodule(work, name)}
    if layers is not None:
        wanted = list(layers)
        unknown = [n for n in wanted if n not in modules]
        if unknown:
            raise ConfigError(f"ptq_greedy_search: no layer {', '.join(unknown)} in the model.")
        order = [n for n in order if n in set(wanted)]
    del work

    best: dict[str, dict[str, Any]] = {name: dict(settings) for name, settings in (resume_overrides or {}).items()}
    if best:
        log.info("Greedy PTQ search: resuming with %d layers already chosen", len(best))
    for name in order:
        module = modules.get(name)
        if module is None:
            continue
        if name in best:
            log.info(
                "Greedy PTQ search: %s (%s) from the resumed overrides: %s", name, type(module).__name__, best[name]
            )
            continue
        layer_base = rules.module_overrides(name)
        if isinstance(module, FP16_TYPES):
            best[name] = _as_override({**layer_base, "fpq_module": 16})
            log.info("Greedy PTQ search: %s (%s) kept in float16", name, type(module).__name__)
            if on_layer_done is not None:
                on_layer_done(copy.deepcopy(best))
            continue
        if not isinstance(module, SEARCHED_TYPES):
            log.debug("Greedy PTQ search: skipping %s (%s)", name, type(module).__name__)
            continue
        if rules.module_qbits(name, module).acts is None or any(
            layer_base.get(k) for k in ("fpq_module", "make_identity", "fp16")
        ):
            log.info("Greedy PTQ search: skipping %s: its activations are not quantized", name)
            continue
        log.info("Greedy PTQ search: %s (%s)", name, type(module).__name__)
        best_score, best_override = math.nan, None
        for mode in modes:
            override = _as_override({**layer_base, "clip_acts": mode})
            candidate = {**best, name: override}
            value = score(candidate)
            log.info("    clip_acts=%-8s score %.6f", mode, value)
            if best_override is None or better(value, best_score):
                best_score, best_override = value, override
        best[name] = best_override
        log.info("    chosen: %s (score %.6f)", dict(best_override), best_score)
        if on_layer_done is not None:
            on_layer_done(copy.deepcopy(best))

    quantized = build(best)
    with torch.no_grad():
        final = float(eval_fn(quantized))
    log.info("Greedy PTQ search done: score %.6f with %d layer overrides", final, len(best))
    return quantized, best


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True
