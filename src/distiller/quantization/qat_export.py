"""From a quantization-aware-trained model to the post-training quantizer's representation (and int8 ONNX).

The original Distiller had no path from a QAT-trained model to an integer model (its issue #380): the
QAT quantizers only simulate. :func:`convert_qat_to_ptq` turns a model prepared and trained by one of
the QAT quantizers (:class:`~distiller.quantization.DorefaQuantizer`, ``PACTQuantizer``,
``WRPNQuantizer``, ``QuantAwareTrainRangeLinearQuantizer``, ``NCFQuantAwareTrainQuantizer``,
``LSQQuantizer``) into a static-mode :class:`~distiller.quantization.PostTrainLinearQuantizer` model
that computes the function the QAT model computes in evaluation mode, on the QAT model's own grids.
:func:`~distiller.quantization.export_onnx` then writes it as an int8 QDQ ONNX model, and ONNX
Runtime runs what the simulation computes (``docs/design/quantization.md``).

How
---

1. A copy of the model loses its float shadow weights (:func:`~distiller.quantization.strip_fp_copy`:
   ``weight`` holds the on-grid values the QAT forward pass used), and every QAT activation quantizer
   becomes the float module it replaced (PACT/DoReFa/WRPN/LSQ clipping → ``nn.ReLU``) or wrapped
   (``FakeQuantizationWrapper``/``LSQWrapper`` → the wrapped module); range-linear input quantization
   is removed.
2. The grids are read from the QAT modules by small pure functions (:func:`activation_grid`,
   :func:`dorefa_weight_grid`, :func:`wrpn_weight_grid`, :func:`range_linear_weight_grid`,
   :func:`lsq_weight_grid`): an activation grid is ``(bits, mode, low, high)``, a weight grid the
   integer codes with their scale and zero point (Distiller's convention: ``w = (q + zp) / scale``).
3. The tensors the QAT model kept in float (the model input, the logits, outputs no QAT quantizer
   follows) are calibrated on ``calibration_loader`` (:func:`distiller.quantization.calibrate`, run
   on the QAT model itself, so the statistics are those of the tensors it computes) and get
   ``float_acts_bits`` (8) ``ASYMMETRIC_UNSIGNED``: an int8 deployment has to quantize them.
4. Batch norms are folded (as the post-training quantizer does) *before* the post-training
   quantizer sees the model, so that the weight grids can follow: folding multiplies output channel
   ``j`` by ``c_j = γ_j / σ_j``, so the folded layer's grid is per channel with scale ``scale / |c_j|``
   (a negative ``c_j`` mirrors the codes inside the integer range, ``q → q_min + q_max − q``).
5. The statistics dict is built programmatically: every QAT-quantized tensor gets its grid's range as
   ``min``/``max`` (and a ReLU-type quantizer's grid is also given to its producer, which the
   post-training quantizer then fuses with it, as it does for ReLUs), grids are carried through
   value-preserving modules and shape functions (max pooling, flatten), and per-module overrides set
   the bits and modes (``input_overrides`` where an input's grid differs from its consumer's).
   Layers whose weights and output the QAT quantizer kept in float (``null`` overrides) stay float.
6. After ``prepare_model`` every quantized layer's integer weights, scale and zero point are set to
   the QAT grid's ("pinned"); :attr:`QATConversion.weights` records whether the post-training
   quantizer's own re-quantization had already produced exactly them.

Bits and modes, and why they reproduce the QAT grid
---------------------------------------------------

* **DoReFa / PACT** ``k``-bit weights ``S·(2i − n)/n`` (``i = 0..n``, ``n = 2^k − 1``, ``S = max|w|``: 1, or
  ``max|tanh w|`` with ``scale_weights``; exact zeros where pruned): ``k + 1`` bits ``SYMMETRIC_RESTRICTED``,
  scale ``n/S``, codes ``2i − n``. 1-bit weights ``±mean|w|``: 2 bits, codes ±1.
* **WRPN** ``k``-bit weights, multiples of ``1/m`` in ``[−1, 1]`` (``m = 2^(k−1) − 1``): ``k`` bits
  ``SYMMETRIC_RESTRICTED``, scale ``m``.
* **range-linear** ``k``-bit weights ``(q + zp)/scale`` with the layer's ``weight_scale`` /
  ``weight_zero_point``: ``k`` bits, the QAT mode, per channel as in QAT.
* **LSQ** ``k``-bit weights ``q·s``, ``q ∈ [−2^(k−1), 2^(k−1) − 1]``: ``k`` bits ``SYMMETRIC``, scale ``1/s``.
* **PACT** activations (``[0, α]``, ``2^k`` levels): ``k`` bits ``ASYMMETRIC_UNSIGNED`` with statistics
  ``min 0``, ``max α`` (scale ``(2^k − 1)/α``, zero point 0); **DoReFa / WRPN**: the same with ``α = 1``.
* **range-linear** activations: the same bits and mode over the EMA range (ReLU-type outputs: unsigned
  over ``[0, max]``, as the QAT quantizer does).
* **LSQ** activations ``s·[0, 2^k − 1]``: ``ASYMMETRIC_UNSIGNED`` over ``[0, (2^k − 1)s]``; signed
  ``s·[−2^(k−1), 2^(k−1) − 1]``: ``SYMMETRIC`` over ``±(2^k − 1)s/2``; both give scale ``1/s``.
* the model input, the logits and other tensors the QAT model kept float: ``float_acts_bits``
  ``ASYMMETRIC_UNSIGNED`` from calibration statistics.

Why ``k + 1`` bits for DoReFa: its levels are the *odd* multiples of ``S/n`` (``2i − n`` is odd), so 0 is
not one of them, while every post-training grid contains 0 (its zero point is an integer; zero padding
and pruned weights need it). A ``k``-bit grid holding all ``2^k`` DoReFa levels would need a half-integer
zero point; the ``(k + 1)``-bit restricted grid has step ``S/n``, holds every level and 0, and because
``max|w| = S`` is always attained (the largest ``|tanh w|`` maps to ``±1`` exactly) the post-training
quantizer's own re-quantization from the tensor's range gives exactly this grid. For ``k ≥ 8`` the
codes need 9 bits, which ``int8`` cannot hold: the layer is then re-quantized to 8 bits (approximate;
a warning says so: 256 odd levels would need a half-integer zero point). The 8-bit grids the
post-training quantizer derives from a range (steps ``S/127`` or ``2S/255``) hold the ``k``-bit DoReFa
levels only for ``k = 7`` (``2^k − 1`` divides 127), so "8 bits" is no alternative; ``k + 1`` bits is
the smallest grid with 0 that holds them, and the deployed ``int8`` values are the same either way.

For activations the post-training quantizer's formulas (``scale = (2^k − 1)/(max − min)``, zero point
``round(scale·min)``; symmetric ``n/max|·|``) are the QAT quantizers' own, evaluated on the same
``float32`` numbers, so the output scales are bit-identical (LSQ: to float rounding of ``1/s``).
The grids of WRPN, range-linear and LSQ weights are reproduced by re-quantization only when the
tensor attains the grid's extremes, hence the pinning of step 6.

What differs from the QAT model
-------------------------------

Only what an integer deployment changes: the model input and the logits (and any other tensor the QAT
model kept float) become ``float_acts_bits``-bit; biases become ``int32`` at the accumulator's scale
``s_in·s_w`` (off by at most half an accumulator unit, i.e. ``M/2`` output steps with ``M = s_out/(s_in·s_w)``
the requantization multiplier, so at most a fraction ``M`` of a layer's outputs move by one step);
products are summed exactly in integers instead of in float32; and values exactly half way between two
levels round like ONNX Runtime (dividing by its scale) instead of like the QAT module (multiplying), which
matters for full-range symmetric grids, where every clipped value is such a tie. Without biases, a model
fed the deployed model's 8-bit input is reproduced exactly at every quantized layer (tested).
"""

from __future__ import annotations

import copy
import operator
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from distiller.errors import QuantizationError
from distiller.naming import normalize_module_name
from distiller.quantization.clipped_linear import (
    DorefaQuantizer,
    PACTQuantizer,
    WRPNQuantizer,
)
from distiller.quantization.modes import LinearQuantMode
from distiller.quantization.qat_grids import (  # noqa: F401 - re-exported
    _ASYM_U,
    _MIN_CLIP,
    _SYM,
    _SYM_RESTR,
    ActivationGrid,
    WeightGrid,
    _grid_value,
    activation_grid,
    dorefa_weight_grid,
    float_module_of,
    fold_weight_grid,
    lsq_weight_grid,
    pin_weight_grid,
    range_linear_weight_grid,
    weight_grid_of,
    wrpn_weight_grid,
)
from distiller.quantization.quantizer import Quantizer, has_fp_copy, strip_fp_copy
from distiller.quantization.range_linear_qat import (
    FakeLinearQuantization,
    QuantAwareTrainRangeLinearQuantizer,
)
from distiller.quantization.wrappers.fake import VALUE_PRESERVING_TYPES
from distiller.quantization.wrappers.param_layers import PARAM_LAYER_TYPES

__all__ = [
    "ActivationGrid",
    "QATConversion",
    "WeightGrid",
    "WeightReport",
    "activation_grid",
    "convert_qat_to_ptq",
    "dorefa_weight_grid",
    "float_module_of",
    "fold_weight_grid",
    "lsq_weight_grid",
    "pin_weight_grid",
    "range_linear_weight_grid",
    "weight_grid_of",
    "wrpn_weight_grid",
]


# --- the model: float copy, calibration copy, graph -----------------------------------------------------


class _OpaqueLeaf(nn.Module):
    """Runs a module without registering it as a child, so that tracing keeps it one leaf call."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self._hidden = [module]

    def forward(self, *args: Any) -> Any:
        return self._hidden[0](*args)


class _MappedBatches:
    """A re-iterable loader whose inputs pass through ``fn`` (range-linear QAT's input quantization)."""

    def __init__(self, loader: Iterable[Any], fn: Any) -> None:
        self.loader = loader
        self.fn = fn

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            if isinstance(batch, (list, tuple)):
                yield type(batch)([self.fn(batch[0]), *batch[1:]])
            else:
                yield self.fn(batch)


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def _qat_activation_modules(model: nn.Module) -> dict[str, nn.Module]:
    out: dict[str, nn.Module] = {}
    seen: set[int] = set()
    for name, module in model.named_modules():
        if not name or id(module) in seen:
            continue
        if activation_grid(module) is not None and not any(name.startswith(p + ".") for p in out):
            out[name] = module
            seen.add(id(module))
    return out


def _remove_input_quantization(model: nn.Module) -> FakeLinearQuantization | None:
    """Drop range-linear QAT's ``inputs_quant`` and its forward pre-hook; returns the quantizer."""
    from distiller.quantization.range_linear_qat import _quantize_model_inputs

    inputs_quant = model._modules.get("inputs_quant")
    for key, hook in list(model._forward_pre_hooks.items()):
        if hook is _quantize_model_inputs:
            del model._forward_pre_hooks[key]
    if isinstance(inputs_quant, FakeLinearQuantization):
        del model._modules["inputs_quant"]
        return inputs_quant
    return None


def _drop_qat_state(module: nn.Module) -> None:
    """Remove what a QAT quantizer added to a layer (range-linear scales, LSQ step sizes)."""
    for name in list(module._buffers):
        if name.endswith(("_scale", "_zero_point")) and name.rsplit("_", 2)[0] in module._parameters:
            del module._buffers[name]
    for name in list(module._parameters):
        if name.endswith("_step") and name[: -len("_step")] in module._parameters:
            del module._parameters[name]


_SHAPE_FUNCTIONS = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.transpose,
    torch.permute,
    torch.t,
    operator.getitem,
}
_SHAPE_METHODS = {
    "flatten",
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "transpose",
    "permute",
    "contiguous",
    "view_as",
    "reshape_as",
    "t",
}
#: Modules through which a ReLU-type grid moves to the producer: they pass values and commute with
#: monotone quantization (max(q(x)) = q(max(x))).
_MONOTONE_PASS = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.Flatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_UNWRAPPED = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d)  # the post-training quantizer leaves them


def _is_shape_op(node: fx.Node) -> bool:
    return (node.op == "call_function" and node.target in _SHAPE_FUNCTIONS) or (
        node.op == "call_method" and node.target in _SHAPE_METHODS
    )


def _data_input(node: fx.Node) -> fx.Node | None:
    return next((a for a in node.args if isinstance(a, fx.Node)), None)


def _clips_like_relu(module: nn.Module, grid: ActivationGrid) -> bool:
    """Whether quantizing a tensor onto ``grid`` includes what ``module`` computes (so the producer can).

    A grid over ``[0, high]`` clamps at 0 like a ReLU (and at ``high ≤ 6`` like a ReLU6), in either
    asymmetric mode (symmetric grids over ``[0, high]`` do not occur: QAT uses the unsigned grid there).
    """
    if grid.low != 0.0 or grid.mode not in (_ASYM_U, LinearQuantMode.ASYMMETRIC_SIGNED):
        return False
    return type(module) is nn.ReLU or (type(module) is nn.ReLU6 and grid.high <= 6.0)


def tensor_grids(
    gm: fx.GraphModule, act_grids: Mapping[str, ActivationGrid], input_grid: ActivationGrid | None
) -> dict[fx.Node, ActivationGrid | None]:
    """The grid of every value of ``gm``'s graph (``None``: the QAT model computes it in float).

    A quantizer's output is on its grid; a ReLU-type quantizer's grid also applies to its producer
    when the producer's output reaches only it (through value-passing modules and shape functions);
    value-preserving modules and shape functions keep their input's grid.
    """
    modules = dict(gm.named_modules())
    fixed: dict[fx.Node, ActivationGrid] = {}
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in act_grids:
            continue
        grid = act_grids[node.target]
        fixed[node] = grid
        if not _clips_like_relu(modules[node.target], grid):
            continue
        chain: list[fx.Node] = []
        src = _data_input(node)
        while src is not None and len(src.users) == 1 and src not in fixed:
            chain.append(src)
            if _is_shape_op(src) or (src.op == "call_module" and isinstance(modules[src.target], _MONOTONE_PASS)):
                src = _data_input(src)
                continue
            break
        producer = chain[-1] if chain else None
        if (
            producer is not None
            and producer.op == "call_module"
            and not isinstance(modules[producer.target], (*_MONOTONE_PASS, nn.Embedding))
        ):
            for n in chain:
                fixed[n] = grid
    grids: dict[fx.Node, ActivationGrid | None] = {}
    first_placeholder = True
    for node in gm.graph.nodes:
        if node in fixed:
            grids[node] = fixed[node]
        elif node.op == "placeholder":
            grids[node] = input_grid if first_placeholder else None
            first_placeholder = False
        elif _is_shape_op(node) or (
            node.op == "call_module" and isinstance(modules[node.target], VALUE_PRESERVING_TYPES)
        ):
            src = _data_input(node)
            grids[node] = grids.get(src) if src is not None else None
        else:
            grids[node] = None
    return grids


def _requantizing_module(module: nn.Module, grid: ActivationGrid) -> nn.Module | None:
    """A module computing what ``module`` does on its grid, that the post-training quantizer re-quantizes.

    The post-training quantizer passes a ReLU's input parameters through (a ReLU keeps values), so a
    ReLU-type QAT quantizer whose grid no producer took would be lost; ``Hardtanh(0, high)`` (an ONNX
    ``Clip``) is the same function on the grid's range and gets the grid as its output parameters.
    """
    if type(module) is nn.ReLU and grid.low <= 0.0:
        return nn.Hardtanh(0.0, max(grid.high, 0.0))
    return None


def _requantize_unfused_activations(
    gm: fx.GraphModule, grids: Mapping[fx.Node, ActivationGrid | None], act_grids: Mapping[str, ActivationGrid]
) -> None:
    for node in gm.graph.nodes:
        if node.op != "call_module" or node.target not in act_grids:
            continue
        module = gm.get_submodule(node.target)
        src = _data_input(node)
        if not isinstance(module, VALUE_PRESERVING_TYPES) or (src is not None and grids.get(src) == grids[node]):
            continue
        replacement = _requantizing_module(module, act_grids[node.target])
        if replacement is None:
            warnings.warn(
                f"{node.target}: the QAT grid of this {type(module).__name__} cannot be applied (the post-training "
                "quantizer keeps its input's parameters); the deployed model uses its input's grid",
                stacklevel=3,
            )
            continue
        _set_module(gm, str(node.target), replacement)


# --- the conversion -------------------------------------------------------------------------------------


@dataclass
class WeightReport:
    """How one layer's QAT weight grid became post-training weights."""

    qat_bits: int
    num_bits: int
    mode: str
    per_channel: bool
    folded: bool
    pinned: bool  # the QAT grid's codes and scales were set (False: the layer was re-quantized to 8 bits)
    requantized_exactly: bool  # the post-training quantizer's own re-quantization already gave the grid
    max_error_steps: float  # largest distance of the QAT weights from the deployed grid, in steps


@dataclass
class QATConversion:
    """What :func:`convert_qat_to_ptq` did (the ``qat_conversion`` attribute of its result)."""

    quantizer: str
    weights: dict[str, WeightReport] = field(default_factory=dict)
    activations: dict[str, ActivationGrid] = field(default_factory=dict)  # module outputs on QAT grids
    calibrated: list[str] = field(default_factory=list)  # tensors quantized from calibration statistics
    float_layers: list[str] = field(default_factory=list)
    folded: list[tuple[str, str]] = field(default_factory=list)
    input_grid: ActivationGrid | None = None

    def summary(self) -> str:
        lines = [f"QAT ({self.quantizer}) -> post-training quantization:"]
        for name, w in self.weights.items():
            how = "pinned" if w.pinned else "re-quantized (approximate)"
            lines.append(
                f"  {name}: {w.qat_bits}-bit QAT weights -> {w.num_bits}-bit {w.mode}"
                f"{' per channel' if w.per_channel else ''}{' (BN folded)' if w.folded else ''}, {how}, "
                f"max error {w.max_error_steps:.2g} steps"
            )
        for name, g in self.activations.items():
            lines.append(f"  {name} output: {g.num_bits}-bit {g.mode.name} [{g.low:.6g}, {g.high:.6g}]")
        if self.calibrated:
            lines.append(f"  calibrated ({len(self.calibrated)}): {', '.join(self.calibrated)}")
        if self.float_layers:
            lines.append(f"  float: {', '.join(self.float_layers)}")
        return "\n".join(lines)


def _stats_entry(stats: Mapping[str, Any], name: str, index: int | None = None) -> dict[str, Any] | None:
    entry = stats.get(name)
    if entry is None:
        return None
    if index is None:
        return entry.get("output")
    return (entry.get("inputs") or {}).get(index)


def _plan(
    gm: fx.GraphModule,
    grids: Mapping[fx.Node, ActivationGrid | None],
    weight_grids: Mapping[str, WeightGrid],
    calibrated: Mapping[str, Any],
    float_acts_bits: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], list[str], list[str], list[str]]:
    """Post-training overrides and statistics for every module call of ``gm``.

    Returns ``(overrides, stats, calibrated tensors, missing statistics, float layers)``.
    """
    modules = dict(gm.named_modules())
    overrides: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, Any]] = {}
    used, missing, float_layers = [], [], []
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        name = normalize_module_name(str(node.target))
        module = modules[node.target]
        if isinstance(module, _UNWRAPPED):
            continue
        out = grids.get(node)
        wgrid = weight_grids.get(name)
        is_layer = isinstance(module, PARAM_LAYER_TYPES)
        if isinstance(module, (*PARAM_LAYER_TYPES, nn.Embedding)) and wgrid is None and out is None:
            overrides[name] = {"bits_activations": None, "bits_weights": None}
            float_layers.append(name)
            continue
        acts_bits, acts_mode = (out.num_bits, out.mode) if out is not None else (float_acts_bits, _ASYM_U)
        wbits, wmode = (None, _SYM_RESTR) if wgrid is None else (wgrid.num_bits, wgrid.mode)
        if wgrid is not None and not wgrid.fits_int8:
            wbits, wmode = 8, _SYM_RESTR
        over: dict[str, Any] = {
            "bits_activations": acts_bits,
            "mode": {"activations": acts_mode.name, "weights": wmode.name},
        }
        if isinstance(module, nn.Embedding):
            over["bits_weights"] = wbits
            overrides[name] = over
            continue
        if is_layer:
            over["bits_weights"] = wbits
            over["per_channel_wts"] = bool(wgrid is not None and wgrid.per_channel)
        entry: dict[str, Any] = {}
        if out is not None:
            entry["output"] = out.stats()
        else:
            cal = _stats_entry(calibrated, name)
            if cal is None:
                missing.append(f"{name} output")
            else:
                entry["output"] = copy.deepcopy(cal)
                used.append(f"{name} output")
        inputs: dict[int, Any] = {}
        input_overrides: dict[int, dict[str, Any]] = {}
        for index, arg in enumerate(node.args):
            if not isinstance(arg, fx.Node):
                continue
            grid = grids.get(arg)
            if grid is not None:
                inputs[index] = grid.stats()
                bits, mode = grid.num_bits, grid.mode
            else:
                cal = _stats_entry(calibrated, name, index)
                if cal is None:
                    missing.append(f"{name} input {index}")
                    continue
                inputs[index] = copy.deepcopy(cal)
                if _source(arg).op == "placeholder":
                    used.append(f"{name} input {index} (the model input)")
                bits, mode = float_acts_bits, _ASYM_U
            if (bits, mode) != (acts_bits, acts_mode):
                input_overrides[index] = {"bits_activations": bits, "mode": mode.name}
        if inputs:
            entry["inputs"] = inputs
        if input_overrides:
            over["input_overrides"] = input_overrides
        if entry:
            stats[name] = entry
        overrides[name] = over
    return overrides, stats, used, missing, float_layers


def _source(node: fx.Node) -> fx.Node:
    """The value ``node`` reshapes (through shape functions)."""
    while _is_shape_op(node):
        src = _data_input(node)
        if src is None:
            break
        node = src
    return node


def _float_and_calibration_models(source: nn.Module, quantizer: Quantizer) -> tuple[Any, ...]:
    """``(float model, calibration model, weight grids, QAT weight bits, activation grids, input quantizer)``.

    Both models are copies of ``source`` without float shadow weights and without range-linear input
    quantization. The float model has the float modules where the QAT model has activation
    quantizers; the calibration model keeps the quantizers, each one leaf call named like the float
    module, so its statistics are those of the QAT model under the float model's names. Grids are
    keyed by the float model's module names.
    """
    qat = copy.deepcopy(source).eval()
    if has_fp_copy(qat):
        strip_fp_copy(qat)
    inputs_quant = _remove_input_quantization(qat)
    qat_modules = dict(qat.named_modules())
    source_names = {}
    for name, module in source.named_modules():
        source_names.setdefault(id(module), name)
    layers: dict[int, tuple[nn.Module, WeightGrid, int]] = {}
    for entry in quantizer.params_to_quantize:
        if entry.q_attr_name != "weight":
            continue
        name = source_names.get(id(entry.module), normalize_module_name(entry.module_name))
        module = qat_modules.get(name)
        if module is None or not isinstance(getattr(module, "weight", None), torch.Tensor):
            raise QuantizationError(
                f"{type(quantizer).__name__} quantized the weights of {entry.module_name}, which the model does not "
                "have. Fix: pass the model the quantizer prepared."
            )
        layers[id(module)] = (module, weight_grid_of(quantizer, module, entry.num_bits), entry.num_bits)

    act_modules = _qat_activation_modules(qat)
    act_grids = {name: activation_grid(m) for name, m in act_modules.items()}
    calib_model = copy.deepcopy(qat)
    for name, m in act_modules.items():
        _set_module(qat, name, float_module_of(m))
        if next(m.children(), None) is not None:  # a wrapper: one leaf, named like the float module
            _set_module(calib_model, name, _OpaqueLeaf(calib_model.get_submodule(name)))
    qat.__dict__.pop("quantizer_metadata", None)
    weight_grids: dict[str, WeightGrid] = {}
    qat_bits: dict[str, int] = {}
    for name, module in qat.named_modules():
        if id(module) in layers and name not in weight_grids:
            _, grid, bits = layers[id(module)]
            weight_grids[normalize_module_name(name)] = grid
            qat_bits[normalize_module_name(name)] = bits
            _drop_qat_state(module)
    return qat, calib_model, weight_grids, qat_bits, act_grids, inputs_quant


_REPEATED_CALL = re.compile(r"#\d+$")


def _with_repeated_calls(gm: fx.GraphModule, by_name: Mapping[str, Any]) -> dict[str, Any]:
    """``by_name`` extended to the copies ``modularize`` makes of modules called more than once
    (``relu#1`` is the second call of ``relu``: the same QAT quantizer, the same grid)."""
    out = dict(by_name)
    for node in gm.graph.nodes:
        if node.op == "call_module":
            name = normalize_module_name(str(node.target))
            base = _REPEATED_CALL.sub("", name)
            if name not in out and base in out:
                out[name] = out[base]
    return out


def _fold_batch_norms(
    gm: fx.GraphModule, dummy_input: torch.Tensor, weight_grids: dict[str, WeightGrid], calibrated: dict[str, Any]
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Fold batch norms as the post-training quantizer would, before it sees ``gm``, and make the folded
    layers' grids per channel (in place in ``weight_grids``). Returns the pairs and the moved statistics."""
    from distiller.quantization.bn_folding import fold_batch_norms, move_folded_stats

    before = {name: gm.get_submodule(name).weight.detach().clone() for name in weight_grids}
    folded = fold_batch_norms(gm, dummy_input)
    for layer, _ in folded:
        name = normalize_module_name(layer)
        if name in weight_grids:
            weight = gm.get_submodule(name).weight
            if not torch.equal(weight, before[name]):
                weight_grids[name] = fold_weight_grid(weight_grids[name], weight)
    return list(folded), (move_folded_stats(calibrated, folded) if calibrated else calibrated)


def _deploy_weight_grid(
    wrapper: nn.Module, grid: WeightGrid, float_weight: torch.Tensor, qat_bits: int, folded: bool
) -> WeightReport:
    """Pin ``grid`` into a post-training wrapper (if int8 holds it) and report how close the result is."""
    if grid.fits_int8:
        exact = pin_weight_grid(wrapper, grid)
        deployed = grid
    else:  # the post-training quantizer's 8-bit re-quantization stays
        settings = wrapper.weight_settings
        exact = False
        deployed = WeightGrid(
            wrapper.wrapped_module.weight.detach(),
            wrapper.w_scale.detach(),
            wrapper.w_zero_point.detach(),
            settings.num_bits,
            settings.mode,
        )
    final = wrapper.weight_settings
    return WeightReport(
        qat_bits=qat_bits,
        num_bits=final.num_bits,
        mode=final.mode.name,
        per_channel=bool(wrapper.w_scale.dim() > 0),
        folded=folded,
        pinned=grid.fits_int8,
        requantized_exactly=exact,
        max_error_steps=deployed.residual(float_weight),
    )


def _check_quantizer(quantizer: Quantizer) -> None:
    from distiller.quantization.lsq import LSQQuantizer

    known = (DorefaQuantizer, PACTQuantizer, WRPNQuantizer, QuantAwareTrainRangeLinearQuantizer, LSQQuantizer)
    if not isinstance(quantizer, known):
        raise QuantizationError(
            f"convert_qat_to_ptq does not know the grids of {type(quantizer).__name__}. Fix: convert models trained "
            f"with {', '.join(k.__name__ for k in known)} (a post-training-quantized model needs no conversion)."
        )
    if not quantizer.prepared:
        raise QuantizationError(
            f"the {type(quantizer).__name__} has not prepared its model: there is nothing quantization-aware to "
            "convert. Fix: prepare_model() and train first, or quantize the float model with distiller.quantize()."
        )


@torch.no_grad()
def convert_qat_to_ptq(
    model: nn.Module,
    quantizer: Quantizer,
    dummy_input: torch.Tensor,
    calibration_loader: Iterable[Any] | None = None,
    *,
    float_acts_bits: int = 8,
) -> nn.Module:
    """The post-training quantizer's representation of a QAT-trained model (see the module docstring).

    Args:
        model: the QAT-prepared and trained model (with float copies, or stripped); not changed.
        quantizer: the QAT quantizer that prepared it (gives the weight grids' kind and bits).
        dummy_input: a batch the model accepts (for tracing, on the model's device).
        calibration_loader: batches (``(inputs, targets)`` or inputs) for the tensors the QAT model kept
            in float (the model input, the logits, ...); a few batches of training data.
        float_acts_bits: bits of those tensors in the deployed model (``ASYMMETRIC_UNSIGNED``).

    Returns:
        A static-mode :class:`~distiller.quantization.PostTrainLinearQuantizer`-prepared model in
        evaluation mode, deployable with :func:`~distiller.quantization.export_onnx`. Its attributes:
        ``quantizer`` (the post-training quantizer), ``quantizer_metadata`` and ``qat_conversion``
        (a :class:`QATConversion`).

    Raises:
        QuantizationError: an unknown QAT quantizer, or tensors needing calibration without a loader.
    """
    from distiller.quantization.api import calibrate
    from distiller.quantization.calibration import unwrap_parallel
    from distiller.quantization.modularize import modularize
    from distiller.quantization.post_train import PostTrainLinearQuantizer

    if isinstance(float_acts_bits, bool) or not isinstance(float_acts_bits, int) or not 2 <= float_acts_bits <= 8:
        raise QuantizationError(
            f"float_acts_bits must be an integer in 2..8 (int8 deployment), got {float_acts_bits!r}"
        )
    _check_quantizer(quantizer)
    source = unwrap_parallel(model)
    report = QATConversion(type(quantizer).__name__)
    float_model, calib_model, weight_grids, qat_bits, act_grids, inputs_quant = _float_and_calibration_models(
        source, quantizer
    )
    input_grid = activation_grid(inputs_quant) if inputs_quant is not None else None
    report.input_grid = input_grid

    device = next((p.device for p in float_model.parameters()), dummy_input.device)
    dummy_input = dummy_input.to(device)
    calibrated: dict[str, Any] = {}
    if calibration_loader is not None:
        loader = calibration_loader
        if inputs_quant is not None:
            loader = _MappedBatches(calibration_loader, inputs_quant.eval().to(device))
        calibrated = calibrate(calib_model, loader, dummy_input, device=device)

    gm = modularize(float_model, dummy_input)
    present = {normalize_module_name(n) for n, _ in gm.named_modules()}
    act_grids = _with_repeated_calls(gm, act_grids)
    weight_grids = {n: g for n, g in _with_repeated_calls(gm, weight_grids).items() if n in present}
    qat_bits = _with_repeated_calls(gm, qat_bits)
    folded, calibrated = _fold_batch_norms(gm, dummy_input, weight_grids, calibrated)
    report.folded = folded
    folded_layers = {normalize_module_name(layer) for layer, _ in folded}

    float_weights = {name: gm.get_submodule(name).weight.detach().clone() for name in weight_grids}
    grids = tensor_grids(gm, act_grids, input_grid)
    _requantize_unfused_activations(gm, grids, act_grids)
    overrides, stats, used, missing, float_layers = _plan(gm, grids, weight_grids, calibrated, float_acts_bits)
    if missing:
        why = "no calibration_loader was given" if calibration_loader is None else "calibration did not reach them"
        raise QuantizationError(
            f"the QAT model computes these tensors in float, so the int8 model quantizes them from calibration "
            f"statistics, but {why}: {', '.join(missing)}. Fix: pass calibration_loader= (a few batches of "
            "training data)."
        )
    report.calibrated = used
    report.float_layers = float_layers
    modules = dict(gm.named_modules())
    report.activations = {
        normalize_module_name(str(n.target)): g
        for n, g in grids.items()
        if g is not None and n.op == "call_module" and not isinstance(modules[n.target], _UNWRAPPED)
    }
    for name, grid in weight_grids.items():
        if not grid.fits_int8:
            warnings.warn(
                f"{name}: {qat_bits[name]}-bit {report.quantizer} weights need {grid.num_bits}-bit codes, which int8 "
                "cannot hold; the layer is re-quantized to 8 bits (the deployed model differs slightly from the "
                "QAT model). Use at most 7 weight bits for an exact conversion.",
                stacklevel=2,
            )

    ptq = PostTrainLinearQuantizer(
        gm,
        bits_activations=float_acts_bits,
        bits_parameters=8,
        overrides={re.escape(name): over for name, over in overrides.items()},
        mode={"activations": _ASYM_U.name, "weights": _SYM_RESTR.name},
        clip_acts="NONE",
        model_activation_stats=stats,
    )
    prepared = ptq.prepare_model(dummy_input)

    wrappers = dict(prepared.named_modules())
    for name, grid in weight_grids.items():
        wrapper = wrappers.get(name)
        if wrapper is not None and hasattr(wrapper, "w_scale") and hasattr(wrapper, "weight_settings"):
            report.weights[name] = _deploy_weight_grid(
                wrapper, grid, float_weights[name], qat_bits[name], name in folded_layers
            )
    prepared.quantizer_metadata = ptq.quantizer_metadata
    prepared.quantizer_metadata["converted_from"] = report.quantizer
    object.__setattr__(prepared, "quantizer", ptq)
    object.__setattr__(prepared, "qat_conversion", report)
    return prepared
