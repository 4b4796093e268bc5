"""``PostTrainLinearQuantizer``: range-linear post-training quantization with the original's options.

``prepare_model(dummy_input)``:

1. gives every quantizable functional op (``x + y``, ``torch.cat``, ``F.relu``) and every repeated
   call of one module its own module (:func:`~distiller.quantization.modularize.modularize`), so
   models need no rewriting; the prepared model is then a ``torch.fx.GraphModule`` (returned);
2. folds BatchNorm into the preceding convolution / linear layer (the BN's output statistics become
   the layer's);
3. clips statistics by the activation that follows (ReLU → ``[0, max]``, ReLU6 → ``[0, min(max, 6)]``,
   Tanh → ``[-4, 4]``, Sigmoid → ``[-6, 6]``);
4. fuses a ReLU into its producer (``clip_half_range``) and makes the ReLU an identity;
5. replaces modules by the wrappers of :mod:`distiller.quantization.wrappers`.

Static mode needs calibration statistics (``model_activation_stats``: a dict or the original's YAML
file); without them scales are computed per batch (dynamic mode: simulation only).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, GraphError, QuantizationError
from distiller.modules import BatchMatmul, Concat, EltwiseAdd, EltwiseMult, Matmul
from distiller.naming import normalize_module_name
from distiller.quantization.modes import ClipMode, ModuleQuantMode, verify_clip_mode, verify_quant_mode
from distiller.quantization.quantizer import QBits, Quantizer, _check_bits
from distiller.quantization.stats_file import load_quant_stats
from distiller.quantization.wrappers import (
    FPWrapper,
    RangeLinearEmbeddingWrapper,
    RangeLinearFakeQuantWrapper,
    RangeLinearQuantConcatWrapper,
    RangeLinearQuantEltwiseAddWrapper,
    RangeLinearQuantEltwiseMultWrapper,
    RangeLinearQuantMatmulWrapper,
    RangeLinearQuantParamLayerWrapper,
    WeightsOnlyQuantWrapper,
)

__all__ = ["PostTrainLinearQuantizer"]

_ACT_STATS_CLIPS: dict[type, tuple[float | None, float | None]] = {
    nn.ReLU: (0.0, None),
    nn.ReLU6: (0.0, 6.0),
    nn.Tanh: (-4.0, 4.0),
    nn.Sigmoid: (-6.0, 6.0),
}
_NO_FAKE_QUANT = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d)


class PostTrainLinearQuantizer(Quantizer):
    """Post-training range-linear quantization (the original's arguments; see the module docstring).

    Args:
        model: the float model (evaluation mode).
        bits_activations, bits_parameters, bits_accum: bit widths (``None``: keep float).
        overrides: per module-name regex settings (first match wins).
        mode: ``LinearQuantMode`` name/short name, or ``{activations: ..., weights: ...}``.
        clip_acts: ``NONE``/``AVG``/``N_STD``/``GAUSS``/``LAPLACE``.
        clip_n_stds: the ``n`` of ``N_STD`` clipping.
        clip_half_range: clip every activation to its non-negative half.
        per_channel_wts: one weight scale per output channel.
        model_activation_stats: calibration statistics (dict or YAML path); ``None``: dynamic mode.
        fp16: deprecated: same as ``fpq_module=16``.
        fpq_module: run every module in float ``16``/``32``/``64`` instead of quantizing.
        scale_approx_mult_bits: approximate re-quantization scales with an integer multiplier.
        inputs_quant_auto_fallback: quantize inputs without statistics with the output's parameters.
        save_fp_weights: keep float weights in ``float_weight`` buffers.
        also_clip_weights: clip weights with ``clip_acts`` too (used by LAPQ).
    """

    def __init__(
        self,
        model: nn.Module,
        bits_activations: int | None = 8,
        bits_parameters: int | None = 8,
        bits_accum: int = 32,
        overrides: Mapping[str, Mapping[str, Any] | None] | None = None,
        mode: Any = "SYMMETRIC",
        clip_acts: Any = "NONE",
        clip_n_stds: float | None = None,
        clip_half_range: bool = False,
        per_channel_wts: bool = False,
        model_activation_stats: str | Path | Mapping[str, Any] | None = None,
        fp16: bool = False,
        fpq_module: int | None = None,
        scale_approx_mult_bits: int | None = None,
        inputs_quant_auto_fallback: bool = True,
        save_fp_weights: bool = False,
        also_clip_weights: bool = False,
    ) -> None:
        _check_bits(bits_parameters, "bits_parameters")
        _check_bits(bits_accum, "bits_accum")
        super().__init__(model, None, bits_activations, bits_parameters, bits_accum, overrides)
        self.mode = verify_quant_mode(mode)
        self.clip_acts = verify_clip_mode(clip_acts)
        if self.clip_acts == ClipMode.N_STD and clip_n_stds is None:
            raise ConfigError("clip_acts N_STD needs clip_n_stds (the number of standard deviations)")
        if fp16:
            warnings.warn("fp16 is deprecated: use fpq_module=16", DeprecationWarning, stacklevel=2)
            fpq_module = fpq_module or 16
        self.bits_accum = bits_accum
        self.clip_n_stds = clip_n_stds
        self.clip_half_range = clip_half_range
        self.per_channel_wts = per_channel_wts
        self.fpq_module = fpq_module
        self.scale_approx_mult_bits = scale_approx_mult_bits
        self.inputs_quant_auto_fallback = inputs_quant_auto_fallback
        self.save_fp_weights = save_fp_weights
        self.also_clip_weights = also_clip_weights
        self.stats_source = str(model_activation_stats) if isinstance(model_activation_stats, (str, Path)) else None
        self.model_activation_stats = (
            load_quant_stats(model_activation_stats) if model_activation_stats is not None else None
        )
        self.folded_pairs: list[tuple[str, str]] = []
        self.modularized = False
        self.quantizer_metadata = {
            "type": type(self).__name__,
            "params": {
                "bits_activations": bits_activations,
                "bits_parameters": bits_parameters,
                "bits_accum": bits_accum,
                "overrides": copy.deepcopy(dict(self.overrides)),
                "mode": {"activations": self.mode.activations.name, "weights": self.mode.weights.name},
                "clip_acts": self.clip_acts.name,
                "clip_n_stds": clip_n_stds,
                "clip_half_range": clip_half_range,
                "per_channel_wts": per_channel_wts,
                "model_activation_stats": copy.deepcopy(self.model_activation_stats),
                "fpq_module": fpq_module,
                "scale_approx_mult_bits": scale_approx_mult_bits,
                "inputs_quant_auto_fallback": inputs_quant_auto_fallback,
                "save_fp_weights": save_fp_weights,
                "also_clip_weights": also_clip_weights,
            },
        }
        for cls in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear):
            self.replacement_factory[cls] = self._replace_param_layer
        self.replacement_factory[EltwiseAdd] = self._replace_with(RangeLinearQuantEltwiseAddWrapper)
        self.replacement_factory[EltwiseMult] = self._replace_with(RangeLinearQuantEltwiseMultWrapper)
        self.replacement_factory[Concat] = self._replace_with(RangeLinearQuantConcatWrapper)
        self.replacement_factory[Matmul] = self._replace_with(RangeLinearQuantMatmulWrapper)
        self.replacement_factory[BatchMatmul] = self._replace_with(RangeLinearQuantMatmulWrapper)
        self.replacement_factory[nn.Embedding] = self._replace_embedding
        self.default_replacement_fn = self._replace_with(RangeLinearFakeQuantWrapper, any_module=True)
        self.replacement_blacklist = [nn.Dropout, nn.Dropout2d, nn.Dropout3d, nn.Identity]

    @property
    def static(self) -> bool:
        return self.model_activation_stats is not None

    # -- statistics --------------------------------------------------------------------------
    def _stats(self, name: str) -> dict[str, Any] | None:
        if self.model_activation_stats is None:
            return None
        stats = self.model_activation_stats.get(name)
        if stats is None:
            import difflib

            close = difflib.get_close_matches(name, list(self.model_activation_stats), n=3)
            hint = f" (close names: {', '.join(close)})" if close else ""
            source = f" in {self.stats_source}" if self.stats_source else ""
            raise QuantizationError(
                f"no calibration statistics for module '{name}'{source}{hint}. Collect statistics for this "
                "model (distiller classify --qe-calibration ...), or keep the module in float with an "
                "override (bits_activations: null)."
            )
        return stats

    # -- replacement functions (signature: module, name, qbits_map, **overrides) --------------
    def _wrapper_kwargs(
        self,
        name: str,
        qbits: QBits,
        mode: Any = None,
        clip_acts: Any = None,
        clip_n_stds: float | None = None,
        clip_half_range: bool | None = None,
        scale_approx_mult_bits: int | None = None,
        input_overrides: Mapping[int, Mapping[str, Any]] | None = None,
        inputs_quant_auto_fallback: bool | None = None,
    ) -> dict[str, Any]:
        clip = verify_clip_mode(clip_acts) if clip_acts is not None else self.clip_acts
        mode = verify_quant_mode(mode) if mode is not None else self.mode
        return {
            "num_bits_acts": qbits.acts,
            "num_bits_accum": self.bits_accum,
            "mode": mode.activations,
            "clip_acts": clip,
            "activation_stats": self._stats(name),
            "clip_n_stds": clip_n_stds if clip_n_stds is not None else self.clip_n_stds,
            "clip_half_range": self.clip_half_range if clip_half_range is None else bool(clip_half_range),
            "scale_approx_mult_bits": scale_approx_mult_bits or self.scale_approx_mult_bits,
            "input_overrides": input_overrides,
            "inputs_quant_auto_fallback": (
                self.inputs_quant_auto_fallback if inputs_quant_auto_fallback is None else inputs_quant_auto_fallback
            ),
        }

    def _fp_or_none(self, module: nn.Module, fpq_module: int | None) -> nn.Module | None:
        precision = fpq_module if fpq_module is not None else self.fpq_module
        return FPWrapper(module, int(precision)) if precision is not None else None

    def _replace_param_layer(
        self,
        module: nn.Module,
        name: str,
        qbits_map: dict[str, QBits],
        mode: Any = None,
        clip_acts: Any = None,
        clip_n_stds: float | None = None,
        clip_half_range: bool | None = None,
        per_channel_wts: bool | None = None,
        input_overrides: Mapping[int, Mapping[str, Any]] | None = None,
        inputs_quant_auto_fallback: bool | None = None,
        scale_approx_mult_bits: int | None = None,
        fpq_module: int | None = None,
        fake: bool = False,
        make_identity: bool = False,
        quantize_inputs: bool = True,
    ) -> nn.Module:
        qbits = qbits_map[name]
        fp = self._fp_or_none(module, fpq_module)
        if fp is not None:
            return fp
        if qbits.acts is None and qbits.wts is None:
            return module
        wmode = (verify_quant_mode(mode) if mode is not None else self.mode).weights
        per_channel = self.per_channel_wts if per_channel_wts is None else bool(per_channel_wts)
        if qbits.acts is None:
            return WeightsOnlyQuantWrapper(module, qbits.wts, wmode, per_channel, self.save_fp_weights)
        kwargs = self._wrapper_kwargs(
            name,
            qbits,
            mode,
            clip_acts,
            clip_n_stds,
            clip_half_range,
            scale_approx_mult_bits,
            input_overrides,
            inputs_quant_auto_fallback,
        )
        if qbits.wts is None or fake:
            return RangeLinearFakeQuantWrapper(module, **kwargs)
        kwargs["mode"] = ModuleQuantMode(kwargs["mode"], wmode)
        return RangeLinearQuantParamLayerWrapper(
            module,
            num_bits_params=qbits.wts,
            per_channel_wts=per_channel,
            save_fp_weights=self.save_fp_weights,
            also_clip_weights=self.also_clip_weights,
            **kwargs,
        )

    def _replace_with(self, wrapper_cls: type, any_module: bool = False):  # noqa: ANN202
        """A replacement function wrapping a module in ``wrapper_cls`` (``any_module``: the default one,
        which also honours ``make_identity`` and leaves dropout/identity modules alone)."""

        def replace(
            module: nn.Module,
            name: str,
            qbits_map: dict[str, QBits],
            mode: Any = None,
            clip_acts: Any = None,
            clip_n_stds: float | None = None,
            clip_half_range: bool | None = None,
            input_overrides: Mapping[int, Mapping[str, Any]] | None = None,
            inputs_quant_auto_fallback: bool | None = None,
            scale_approx_mult_bits: int | None = None,
            fpq_module: int | None = None,
            make_identity: bool = False,
            quantize_inputs: bool = True,
        ) -> nn.Module:
            if any_module and make_identity:
                return nn.Identity()
            fp = self._fp_or_none(module, fpq_module)
            if fp is not None:
                return fp
            qbits = qbits_map[name]
            if qbits.acts is None or (any_module and isinstance(module, _NO_FAKE_QUANT)):
                return module
            kwargs = self._wrapper_kwargs(
                name,
                qbits,
                mode,
                clip_acts,
                clip_n_stds,
                clip_half_range,
                scale_approx_mult_bits,
                input_overrides,
                inputs_quant_auto_fallback,
            )
            return wrapper_cls(module, **kwargs)

        return replace

    def _replace_embedding(
        self, module: nn.Module, name: str, qbits_map: dict[str, QBits], mode: Any = None, fpq_module: int | None = None
    ) -> nn.Module:
        fp = self._fp_or_none(module, fpq_module)
        if fp is not None:
            return fp
        qbits = qbits_map[name]
        if qbits.wts is None:
            return module
        wmode = (verify_quant_mode(mode) if mode is not None else self.mode).weights
        return RangeLinearEmbeddingWrapper(module, qbits.wts, wmode, self.save_fp_weights)

    # -- preparation -------------------------------------------------------------------------
    def _pre_prepare_model(self, dummy_input: torch.Tensor | None) -> None:
        from distiller.quantization.bn_folding import fold_batch_norms, move_folded_stats
        from distiller.quantization.modularize import modularize

        self.model.eval()
        if dummy_input is None:
            raise QuantizationError(
                "prepare_model needs a dummy input (a batch the model accepts) to find the model's graph"
            )
        self.dummy_input_shape = list(dummy_input.shape)
        try:
            self.model = modularize(self.model, dummy_input)
            self.modularized = True
        except GraphError as exc:
            warnings.warn(
                f"the model does not trace ({exc}); only its modules are quantized (functional operations "
                "such as x + y stay in float)",
                stacklevel=3,
            )
        self.folded_pairs = fold_batch_norms(self.model, dummy_input)
        if self.model_activation_stats is not None:
            self.model_activation_stats = move_folded_stats(self.model_activation_stats, self.folded_pairs)
        self._apply_activation_fusions(dummy_input)

    def _apply_activation_fusions(self, dummy_input: torch.Tensor) -> None:
        """Clip statistics by the activation that follows; fuse ReLUs into their producers."""
        from distiller.graph import ModelGraph

        graph = ModelGraph(self.model, dummy_input)
        modules = dict(self.model.named_modules())
        stats = self.model_activation_stats
        for node in graph.nodes.values():
            if node.name not in modules:
                continue
            succ = _successors_past_identities(graph, modules, node.name)
            if len(succ) != 1 or succ[0] not in modules:
                continue
            act = modules[succ[0]]
            clip = next((c for t, c in _ACT_STATS_CLIPS.items() if isinstance(act, t)), None)
            if clip is None:
                continue
            if stats is not None and node.name in stats and "output" in stats[node.name]:
                stats[node.name] = _clip_output_stats(stats[node.name], *clip)
            if isinstance(act, (nn.ReLU, nn.ReLU6)) and self._can_fuse_relu(node.name, succ[0], act):
                self._add_override(node.name, clip_half_range=True)
                self._add_override(succ[0], make_identity=True)

    def _can_fuse_relu(self, producer: str, relu_name: str, relu: nn.Module) -> bool:
        modules = dict(self.model.named_modules())
        producer_module = modules[producer]
        if not isinstance(
            producer_module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, EltwiseAdd, EltwiseMult, Concat)
        ):
            return False
        if isinstance(relu, nn.ReLU6) and not self.static:
            return False  # without statistics nothing would clamp at 6
        p_bits = self.module_qbits(producer, producer_module)
        r_bits = self.module_qbits(relu_name, relu)
        return p_bits.acts is not None and p_bits.acts == r_bits.acts

    def _add_override(self, name: str, **settings: Any) -> None:
        """Settings for exactly one module, ahead of the user's patterns (keeping what matched it first)."""
        import re

        key = re.escape(name)
        merged = {**self.module_overrides(name), **settings}
        self.overrides[key] = merged
        self.overrides.move_to_end(key, last=False)
        self._patterns = [(p, re.compile(p)) for p in self.overrides]

    def _post_prepare_model(self) -> None:
        self.model.eval()  # the wrappers are evaluation-only

    # -- reports -----------------------------------------------------------------------------
    def layer_quant_params(self) -> OrderedDict[str, dict[str, Any]]:
        """Per quantized module: its scales and zero points as plain numbers."""
        out: OrderedDict[str, dict[str, Any]] = OrderedDict()
        for name, module in self.model.named_modules():
            if hasattr(module, "named_linear_quant_params"):
                out[normalize_module_name(name)] = {
                    k: (v.tolist() if v.dim() else float(v)) for k, v in module.named_linear_quant_params()
                }
        return out


def _successors_past_identities(graph: Any, modules: dict[str, nn.Module], name: str) -> list[str]:
    """Consumers of ``name``'s output, looking through ``nn.Identity`` (folded BatchNorms)."""
    succ = graph.successors(name)
    while len(succ) == 1 and isinstance(modules.get(succ[0]), nn.Identity):
        succ = graph.successors(succ[0])
    return succ


def _clip_output_stats(entry: dict[str, Any], low: float | None, high: float | None) -> dict[str, Any]:
    """A copy of a module's statistics with the output range limited to ``[low, high]``."""
    entry = copy.deepcopy(entry)
    out = entry["output"]
    for key in ("min", "avg_min"):
        if key in out and low is not None:
            out[key] = max(float(out[key]), low)
        if key in out and high is not None:
            out[key] = min(float(out[key]), high)
    for key in ("max", "avg_max"):
        if key in out and high is not None:
            out[key] = min(float(out[key]), high)
        if key in out and low is not None:
            out[key] = max(float(out[key]), low)
    return entry
