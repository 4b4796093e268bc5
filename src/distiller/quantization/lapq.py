"""LAPQ: loss-aware post-training quantization (Nahshan et al., arXiv:1911.07190).

Range-linear post-training quantization picks every scale from calibration statistics, one tensor
at a time. At low bit widths (4 bits) the errors of neighbouring layers interact, and the scales
that minimise each tensor's own error are not those that minimise the network's loss. LAPQ:

1. **initialises** the scales layer by layer: from a clip mode of the statistics (``NONE``, ``AVG``,
   ``GAUSS``, ``LAPLACE``), or by minimising the ``L_p`` distance between a layer's float output and
   its quantized output on the same input (``L1``, ``L2``, ``L3``; the paper found ``p`` between 2 and
   4 a good start at 4 bits);
2. **searches** the vector of all scales (or of all clipping values) jointly against the loss on a
   small evaluation set with a derivative-free method (Powell's coordinate search by default, or
   basin hopping around it).

Implementation: the search works on the buffers of the prepared model's wrappers
(``output_scale``, ``in0_scale``, ``w_scale`` and their zero points). A wrapper's output carries its
``output_scale`` buffer as quantization metadata, so a consumer that takes its input parameters from
that metadata follows a change of the producer's scale at the next forward pass; only the parameters a
forward pass actually reads are searched (a max-pool that passes its input's parameters through, or
an input quantized with its producer's parameters, adds no coordinate). Weight scales re-quantize the
weights from the float copy kept in ``float_weight`` (``save_fp_weights`` is forced on). Per-channel
weight scales are set by the initialisation and then kept.

Entry points: :func:`ptq_coordinate_search` (the whole algorithm), :func:`init_linear_quant_params`
(the initialisation alone), :func:`lapq_eval_fn` (the loss on a few batches),
:func:`apply_quant_params` / :func:`model_quant_params` (read and write the parameters as plain
numbers, e.g. the ``<arch>.quant_params_dict.yaml`` an application saves). Needs ``scipy``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from distiller.errors import ConfigError, GraphError, QuantizationError
from distiller.naming import normalize_module_name
from distiller.quantization.lapq_eval import (  # noqa: F401 - re-exported
    lapq_eval_fn,
)
from distiller.quantization.linear import linear_dequantize, linear_quantize_clamp
from distiller.quantization.modes import ClipMode, LinearQuantMode, is_signed, is_symmetric
from distiller.quantization.settings import QuantSettings, params_from_stats, params_from_tensor, sat_range_params
from distiller.quantization.wrappers import RangeLinearQuantWrapper, WeightsOnlyQuantWrapper

__all__ = [
    "INIT_MODES",
    "apply_quant_params",
    "init_linear_quant_params",
    "lapq_eval_fn",
    "lp_loss",
    "model_quant_params",
    "ptq_coordinate_search",
]

log = logging.getLogger(__name__)

#: Initialisation modes: clip modes of the statistics, or the ``p`` of an ``L_p`` layer-output loss.
INIT_MODES = ("NONE", "AVG", "LAPLACE", "GAUSS", "L1", "L2", "L3")
_CLIP_INIT = {"NONE": ClipMode.NONE, "AVG": ClipMode.AVG, "LAPLACE": ClipMode.LAPLACE, "GAUSS": ClipMode.GAUSS}
_LP_INIT = {"L1": 1.0, "L2": 2.0, "L3": 3.0}
#: The objective's value at an invalid point (a non-positive scale or clipping value, a non-finite loss).
_INVALID = 1e9

LossFn = Callable[[torch.Tensor, torch.Tensor], float]


def lp_loss(x: torch.Tensor, y: torch.Tensor, p: float = 2.0) -> float:
    """``mean(|x - y|^p)`` as a python float."""
    return float((x.detach().float() - y.detach().float()).abs().pow(p).mean())


def _init_mode(init_mode: Any) -> ClipMode | LossFn:
    """A clip mode, or a loss ``fn(float_output, quantized_output) -> float`` to minimise per layer."""
    if isinstance(init_mode, ClipMode):
        if init_mode not in _CLIP_INIT.values():
            raise ConfigError(
                f"LAPQ init mode {init_mode.name} is not supported; choose one of {', '.join(INIT_MODES)}."
            )
        return init_mode
    if callable(init_mode):
        return init_mode
    key = str(init_mode).strip().upper()
    if key in _CLIP_INIT:
        return _CLIP_INIT[key]
    if key in _LP_INIT:
        p = _LP_INIT[key]
        return lambda x, y: lp_loss(x, y, p)
    raise ConfigError(f"Unknown LAPQ init mode {init_mode!r}; choose one of {', '.join(INIT_MODES)}.")


def _init_name(init_mode: Any) -> str:
    if isinstance(init_mode, ClipMode):
        return init_mode.name
    return str(init_mode) if isinstance(init_mode, str) else getattr(init_mode, "__name__", "custom loss")


# -- the quantized tensors of a prepared model --------------------------------------------------


def _weight_view(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 0 else t.reshape([-1] + [1] * (weight.dim() - 1))


def _is_weight_holder(module: nn.Module) -> bool:
    return (
        isinstance(getattr(module, "w_scale", None), torch.Tensor)
        and isinstance(getattr(module, "weight_settings", None), QuantSettings)
        and isinstance(getattr(getattr(module, "wrapped_module", None), "float_weight", None), torch.Tensor)
    )


def _is_quant_module(module: nn.Module) -> bool:
    static = isinstance(module, RangeLinearQuantWrapper) and module.preset_act_qparams
    return static or _is_weight_holder(module)


def _write_buffer(module: nn.Module, name: str, value: torch.Tensor | float) -> None:
    """Overwrite one scale / zero-point buffer in place (through the wrapper's setter when it has one)."""
    if isinstance(module, RangeLinearQuantWrapper):
        module.set_linear_quant_param(name, value)
        return
    buf = getattr(module, name)
    buf.data.copy_(torch.as_tensor(value, dtype=buf.dtype).expand_as(buf))


def _requantize_weights(module: nn.Module) -> None:
    """Re-quantize ``module``'s weights from ``wrapped_module.float_weight`` with its current ``w_scale``."""
    inner = module.wrapped_module
    fw = inner.float_weight
    settings: QuantSettings = module.weight_settings
    scale, zp = _weight_view(module.w_scale, fw), _weight_view(module.w_zero_point, fw)
    low, high = settings.q_range
    q = linear_quantize_clamp(fw, scale, zp, low, high)
    if isinstance(module, WeightsOnlyQuantWrapper):  # keeps dequantized weights
        q = linear_dequantize(q, scale, zp)
    inner.weight.data.copy_(q)


@dataclass
class _QTensor:
    """One quantized tensor of a wrapper: its output, one of its inputs, or its weights."""

    module_name: str
    module: nn.Module
    kind: str  # "output" | "input" | "weight"
    index: int = 0

    @property
    def prefix(self) -> str:
        return {"output": "output", "weight": "w"}.get(self.kind, f"in{self.index}")

    @property
    def scale_name(self) -> str:
        return f"{self.prefix}_scale"

    @property
    def zp_name(self) -> str:
        return f"{self.prefix}_zero_point"

    @property
    def settings(self) -> QuantSettings:
        if self.kind == "output":
            return self.module.output_settings
        if self.kind == "weight":
            return self.module.weight_settings
        return self.module.input_settings[self.index]

    @property
    def scale(self) -> torch.Tensor:
        return getattr(self.module, self.scale_name)

    @property
    def zero_point(self) -> torch.Tensor:
        return getattr(self.module, self.zp_name)

    @property
    def scalar(self) -> bool:
        return self.scale.numel() == 1

    @property
    def one_sided(self) -> bool:
        """Whether one clipping value (the maximum) defines the range: symmetric, or ``[0, max]``."""
        s = self.settings
        return is_symmetric(s.mode) or (s.clip_half_range and float(self.zero_point.abs().max()) == 0.0)

    @property
    def key(self) -> str:
        return f"{self.module_name}.{self.prefix}"

    def set_params(self, scale: torch.Tensor | float, zero_point: torch.Tensor | float | None = None) -> None:
        _write_buffer(self.module, self.scale_name, scale)
        if zero_point is not None:
            _write_buffer(self.module, self.zp_name, zero_point)
        if self.kind == "weight":
            _requantize_weights(self.module)

    # clipping values <-> (scale, zero point)
    def clipping(self) -> tuple[float, float]:
        """The float range ``(min, max)`` the current scale and zero point quantize."""
        s = self.settings
        scale, zp = float(self.scale), float(self.zero_point)
        if is_symmetric(s.mode):
            n = (2**s.num_bits - 1) / 2 if s.mode == LinearQuantMode.SYMMETRIC else 2 ** (s.num_bits - 1) - 1
            return -n / scale, n / scale
        offset = 2 ** (s.num_bits - 1) if is_signed(s.mode) else 0
        low = (zp - offset) / scale
        return low, low + (2**s.num_bits - 1) / scale

    def set_clipping(self, low: float, high: float) -> None:
        scale, zp = sat_range_params(self.settings, torch.tensor(float(low)), torch.tensor(float(high)))
        self.set_params(scale, zp)


@dataclass
class _ModelTensors:
    """The quantized tensors of a prepared model in execution order, and which ones a forward reads."""

    order: list[str] = field(default_factory=list)  # quantized modules in execution order
    modules: dict[str, nn.Module] = field(default_factory=dict)
    used: list[_QTensor] = field(default_factory=list)


def _scan(model: nn.Module, run: Callable[[nn.Module], Any]) -> _ModelTensors:
    """Run ``run(model)`` once with hooks: execution order and the parameters each forward reads."""
    found = _ModelTensors()
    used: dict[str, dict[str, _QTensor]] = {}
    handles = []

    def pre_hook(name: str, module: nn.Module, args: tuple) -> None:
        if name not in found.modules:
            found.order.append(name)
            found.modules[name] = module
        entries = used.setdefault(name, {})
        if _is_weight_holder(module):
            entries.setdefault("weight", _QTensor(name, module, "weight"))
        if not isinstance(module, RangeLinearQuantWrapper):
            return
        for idx, x in enumerate(args):
            over = module.input_overrides.get(idx, {})
            if over.get("from_output"):
                continue
            if getattr(x, "quant_metadata", None) is not None and not over:
                continue  # the producer's parameters
            if idx in module.input_settings:
                entries.setdefault(f"in{idx}", _QTensor(name, module, "input", idx))

    def post_hook(name: str, module: nn.Module, args: tuple, output: Any) -> None:
        if not isinstance(module, RangeLinearQuantWrapper):
            return
        meta = getattr(output, "quant_metadata", None)
        if meta is not None and meta.scale is module.output_scale:
            used[name].setdefault("output", _QTensor(name, module, "output"))

    for raw, module in model.named_modules():
        if raw and _is_quant_module(module):
            name = normalize_module_name(raw)
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: pre_hook(n, m, a)))
            handles.append(module.register_forward_hook(lambda m, a, o, n=name: post_hook(n, m, a, o)))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for h in handles:
            h.remove()
    rank = {"input": 0, "weight": 1, "output": 2}
    for name in found.order:
        found.used.extend(sorted(used[name].values(), key=lambda t: (rank[t.kind], t.index)))
    return found


def _run_input(dummy_input: Any) -> Callable[[nn.Module], Any]:
    def run(model: nn.Module) -> Any:
        return model(*dummy_input) if isinstance(dummy_input, (tuple, list)) else model(dummy_input)

    return run


# -- initialisation -----------------------------------------------------------------------------


def _stats_entry(stats: Mapping[str, Any] | None, t: _QTensor) -> Mapping[str, Any] | None:
    entry = (stats or {}).get(t.module_name)
    if entry is None:
        return None
    if t.kind == "output":
        return entry.get("output")
    if t.kind == "input":
        inputs = entry.get("inputs") or {}
        return inputs.get(t.index, inputs.get(str(t.index)))
    return None


def _init_from_clip_mode(t: _QTensor, clip: ClipMode, stats: Mapping[str, Any] | None) -> None:
    """Scale and zero point of ``t`` as the wrapper would compute them with clip mode ``clip``."""
    settings = t.settings.with_(clip_mode=clip, clip_n_stds=None)
    if t.kind == "weight":
        fw = t.module.wrapped_module.float_weight
        scale, zp = params_from_tensor(settings, fw, per_dim=0 if settings.per_channel else None)
    else:
        entry = _stats_entry(stats, t)
        if entry is None:
            return  # statistics moved or missing: keep the wrapper's own parameters
        scale, zp = params_from_stats(settings, entry)
    t.set_params(scale.to(t.scale.device), zp.to(t.zero_point.device))


def _float_reference(float_model: nn.Module, dummy_input: Any) -> nn.Module:
    """``float_model`` transformed as ``prepare_model`` does before replacing modules (same names)."""
    from distiller.quantization.bn_folding import fold_batch_norms
    from distiller.quantization.modularize import modularize

    model = copy.deepcopy(float_model).eval()
    with contextlib.suppress(GraphError):  # prepare_model falls back to the modules as they are, and so do we
        model = modularize(model, dummy_input)
    fold_batch_norms(model, dummy_input)
    return model


def _capture_layer_inputs(
    model: nn.Module, names: Iterable[str], run: Callable[[nn.Module], Any]
) -> dict[str, tuple[torch.Tensor, ...]]:
    """The inputs of the first call of every module in ``names`` while ``run(model)`` runs."""
    wanted = set(names)
    captured: dict[str, tuple[torch.Tensor, ...]] = {}
    handles = []

    def hook(name: str, args: tuple) -> None:
        if name not in captured:
            captured[name] = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)

    for raw, module in model.named_modules():
        name = normalize_module_name(raw)
        if raw and name in wanted:
            handles.append(module.register_forward_pre_hook(lambda m, a, n=name: hook(n, a)))
    try:
        with torch.no_grad():
            run(model)
    finally:
        for h in handles:
            h.remove()
    return captured


def _clone_args(args: tuple) -> tuple:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)


def _layer_float_output(t_out: _QTensor | None, float_layer: nn.Module, args: tuple) -> torch.Tensor:
    y = float_layer(*_clone_args(args))
    if t_out is not None and t_out.settings.clip_half_range:
        y = torch.relu(y)
    return y


def _optimize_layer(
    name: str,
    tensors: list[_QTensor],
    float_layer: nn.Module,
    args: tuple,
    loss_fn: LossFn,
    method: str | Callable,
) -> None:
    """Minimise ``loss_fn(float output, quantized output)`` of one layer over its scalar scales."""
    import scipy.optimize as opt

    searched = [t for t in tensors if t.kind in ("output", "weight") and t.scalar]
    if not searched:
        return
    module = searched[0].module
    t_out = next((t for t in tensors if t.kind == "output"), None)
    with torch.no_grad():
        y = _layer_float_output(t_out, float_layer, args)

        def objective(vec: np.ndarray) -> float:
            if not np.all(np.isfinite(vec)) or np.any(vec <= 0):
                return _INVALID
            for t, v in zip(searched, vec):
                t.set_params(float(v))
            loss = float(loss_fn(y, module(*_clone_args(args))))
            return loss if math.isfinite(loss) else _INVALID

        x0 = np.array([float(t.scale) for t in searched])
        before = objective(x0)
        result = opt.minimize(objective, x0, method=method)
        best = result.x if float(result.fun) <= before else x0
        objective(np.asarray(best))
    log.debug(
        "LAPQ init %s: layer loss %.6g -> %.6g (%s)",
        name,
        before,
        min(before, float(result.fun)),
        ", ".join(f"{t.scale_name}={float(t.scale):.6g}" for t in searched),
    )


def _check_quantizer(quantizer: Any) -> None:
    from distiller.quantization.post_train import PostTrainLinearQuantizer

    if not isinstance(quantizer, PostTrainLinearQuantizer):
        raise QuantizationError(f"LAPQ needs a PostTrainLinearQuantizer, got {type(quantizer).__name__}.")
    if quantizer.prepared:
        raise QuantizationError(
            "LAPQ needs a quantizer whose prepare_model() was not called yet (it prepares the model itself, "
            "keeping float copies of the weights)."
        )
    if quantizer.model_activation_stats is None:
        raise QuantizationError(
            "LAPQ needs calibration statistics: calibrate the model first (distiller.quantization.calibrate, or "
            "--qe-calibration / --qe-stats-file) and pass them as model_activation_stats to the quantizer."
        )


def _check_modes(tensors: list[_QTensor]) -> None:
    bad = [t.key for t in tensors if t.scalar and not t.one_sided]
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise QuantizationError(
            f"LAPQ searches scales only in symmetric modes; {shown} use an asymmetric mode. Use mode SYMMETRIC "
            "for activations and weights, or search the clipping values instead (search_clipping=True, "
            "--lapq-search-clipping)."
        )


def init_linear_quant_params(
    quantizer: Any,
    dummy_input: Any,
    eval_fn: Callable[[nn.Module], Any] | None = None,
    init_mode: Any = ClipMode.NONE,
    init_method: str | Callable = "Powell",
    search_clipping: bool = False,
) -> nn.Module:
    """Prepare ``quantizer``'s model for LAPQ and initialise its quantization parameters.

    Forces ``save_fp_weights`` and ``also_clip_weights``, prepares the model, then sets every used
    scale (and zero point) in execution order: from the statistics (or the float weights) with the clip
    mode ``init_mode``, or, for ``L1``/``L2``/``L3`` (or a callable ``loss(float_out, quant_out)``),
    starting from ``NONE`` and minimising that loss between each layer's float and quantized outputs
    with ``scipy.optimize.minimize(method=init_method)``. The layers' inputs are those of the first
    batch ``eval_fn`` feeds to the float model (``dummy_input`` when ``eval_fn`` is None).

    Returns:
        The prepared model (``quantizer.model``).

    Raises:
        QuantizationError: not a fresh ``PostTrainLinearQuantizer``, no statistics, or asymmetric
            modes without ``search_clipping``.
        ConfigError: an unknown ``init_mode``.
    """
    _check_quantizer(quantizer)
    mode = _init_mode(init_mode)
    float_model = copy.deepcopy(quantizer.model).eval() if not isinstance(mode, ClipMode) else None
    model, tensors = _prepare(quantizer, dummy_input, search_clipping)
    _initialise(quantizer, tensors, mode, _init_name(init_mode), init_method, float_model, dummy_input, eval_fn)
    return model


def _prepare(quantizer: Any, dummy_input: Any, search_clipping: bool) -> tuple[nn.Module, _ModelTensors]:
    quantizer.save_fp_weights = True
    quantizer.also_clip_weights = True
    params = quantizer.quantizer_metadata.get("params", {})
    params["save_fp_weights"], params["also_clip_weights"] = True, True
    model = quantizer.prepare_model(dummy_input)
    model.eval()
    tensors = _scan(model, _run_input(dummy_input))
    if not tensors.used:
        raise QuantizationError(
            "LAPQ found no statically quantized layer in the model: check the quantizer's bits and overrides."
        )
    if not search_clipping:
        _check_modes(tensors.used)
    return model, tensors


def _initialise(
    quantizer: Any,
    tensors: _ModelTensors,
    mode: ClipMode | LossFn,
    init_name: str,
    init_method: str | Callable,
    float_model: nn.Module | None,
    dummy_input: Any,
    eval_fn: Callable[[nn.Module], Any] | None,
) -> None:
    stats = quantizer.model_activation_stats
    clip = mode if isinstance(mode, ClipMode) else ClipMode.NONE
    for t in tensors.used:  # per-channel weight scales too: they are not searched, but take the init clip mode
        _init_from_clip_mode(t, clip, stats)
    log.info("LAPQ: initialising %d quantization parameters with %s", len(tensors.used), init_name)
    if isinstance(mode, ClipMode):
        return
    _import_scipy()
    reference = _float_reference(float_model, dummy_input)
    run = (lambda m: eval_fn(m)) if eval_fn is not None else _run_input(dummy_input)
    inputs = _capture_layer_inputs(reference, tensors.order, run)
    float_layers = {normalize_module_name(n): m for n, m in reference.named_modules() if n}
    by_module: dict[str, list[_QTensor]] = OrderedDict()
    for t in tensors.used:
        by_module.setdefault(t.module_name, []).append(t)
    for name in tensors.order:
        if name not in inputs or name not in float_layers or name not in by_module:
            continue
        _optimize_layer(name, by_module[name], float_layers[name], inputs[name], mode, init_method)


def _import_scipy() -> Any:
    try:
        import scipy.optimize as opt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise QuantizationError("LAPQ needs scipy (scipy.optimize): pip install scipy") from exc
    return opt


# -- the search ---------------------------------------------------------------------------------


class _Vector:
    """The search vector: scalar scales, or clipping values (one or two per tensor)."""

    def __init__(self, tensors: list[_QTensor], search_clipping: bool) -> None:
        self.tensors = [t for t in tensors if t.scalar]
        self.search_clipping = search_clipping
        self.keys: list[str] = []
        for t in self.tensors:
            if not search_clipping:
                self.keys.append(f"{t.module_name}.{t.scale_name}")
            elif t.one_sided:
                self.keys.append(f"{t.key}_clipping")
            else:
                self.keys.extend([f"{t.key}_clipping.min", f"{t.key}_clipping.max"])

    def get(self) -> np.ndarray:
        values: list[float] = []
        for t in self.tensors:
            if not self.search_clipping:
                values.append(float(t.scale))
            elif t.one_sided:
                values.append(t.clipping()[1])
            else:
                values.extend(t.clipping())
        return np.array(values, dtype=np.float64)

    def set(self, vec: np.ndarray) -> bool:
        """Write ``vec`` into the model; False (and nothing written) for an invalid point."""
        if not np.all(np.isfinite(vec)):
            return False
        if not self.search_clipping:
            if np.any(vec <= 0):
                return False
            for t, v in zip(self.tensors, vec):
                t.set_params(float(v))
            return True
        pairs, i = [], 0
        for t in self.tensors:
            if t.one_sided:
                high = float(vec[i])
                if high <= 0:
                    return False
                low = 0.0 if t.settings.clip_half_range or not is_symmetric(t.settings.mode) else -high
                pairs.append((t, low, high))
                i += 1
            else:
                low, high = sorted((float(vec[i]), float(vec[i + 1])))
                if high - low <= 0:
                    return False
                pairs.append((t, low, high))
                i += 2
        for t, low, high in pairs:
            t.set_clipping(low, high)
        return True


def model_quant_params(model: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module: {buffer: value}}`` of every scale and zero point of a quantized model, as plain numbers."""
    out: dict[str, dict[str, Any]] = {}
    for raw, module in model.named_modules():
        if not raw or not (_is_quant_module(module) or isinstance(module, RangeLinearQuantWrapper)):
            continue
        values = {
            n: (float(b) if b.numel() == 1 else b.flatten().tolist())
            for n, b in module.named_buffers(recurse=False)
            if n.endswith(("_scale", "_zero_point"))
        }
        if values:
            out[normalize_module_name(raw)] = values
    return out


def apply_quant_params(model: nn.Module, params: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``{module: {buffer: value}}`` (from :func:`ptq_coordinate_search` or a saved YAML) into a
    prepared model; weights are re-quantized from their float copies where a weight scale changes.

    Raises:
        QuantizationError: an unknown module or parameter, or a weight scale without ``float_weight``.
    """
    modules = {normalize_module_name(n): m for n, m in model.named_modules() if n}
    for name, values in params.items():
        module = modules.get(normalize_module_name(name))
        if module is None:
            raise QuantizationError(f"apply_quant_params: the model has no module {name!r}.")
        buffers = dict(module.named_buffers(recurse=False))
        for pname, value in values.items():
            if pname not in buffers or not pname.endswith(("_scale", "_zero_point")):
                raise QuantizationError(f"apply_quant_params: {name} has no quantization parameter {pname!r}.")
            _write_buffer(
                module, pname, torch.as_tensor(value, dtype=buffers[pname].dtype).reshape(buffers[pname].shape)
            )
        if any(p.startswith("w_") for p in values):
            if not _is_weight_holder(module):
                raise QuantizationError(
                    f"apply_quant_params: {name} has no float copy of its weights to re-quantize; quantize with "
                    "save_fp_weights=True."
                )
            _requantize_weights(module)


def _vector_to_params(vector: _Vector) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for t in vector.tensors:
        entry = out.setdefault(t.module_name, {})
        entry[t.scale_name] = float(t.scale)
        entry[t.zp_name] = float(t.zero_point)
    return out


def ptq_coordinate_search(
    quantizer: Any,
    dummy_input: Any,
    eval_fn: Callable[[nn.Module], Any],
    test_fn: Callable[[nn.Module], Any] | None = None,
    method: str | Callable = "Powell",
    maxiter: int | None = None,
    maxfev: int | None = None,
    basinhopping: bool = False,
    basinhopping_niter: int = 100,
    init_mode: Any = ClipMode.NONE,
    init_method: str | Callable = "Powell",
    search_clipping: bool = False,
    minimizer_kwargs: Mapping[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, dict[str, float]]]:
    """LAPQ: search the quantization parameters of a model against its loss (see the module docstring).

    Args:
        quantizer: a ``PostTrainLinearQuantizer`` over the float model, with calibration statistics
            (``model_activation_stats``), not yet prepared. Its modes must be symmetric unless
            ``search_clipping`` (a fused ReLU's ``[0, max]`` output counts as symmetric).
        dummy_input: a batch the model accepts (for ``prepare_model``).
        eval_fn: ``eval_fn(model) -> loss`` on a small fixed evaluation set (see :func:`lapq_eval_fn`);
            the function minimised. Called once on the float model too when ``init_mode`` is ``L1``-``L3``
            (its first batch gives the layers' inputs).
        test_fn: optional ``test_fn(model)``, called after the initialisation and after every iteration;
            its result is logged.
        method: ``scipy.optimize.minimize`` method (derivative-free: ``Powell``, ``Nelder-Mead``, ...).
        maxiter, maxfev: the minimiser's iteration / function-evaluation limits.
        basinhopping: search with ``scipy.optimize.basinhopping`` around ``method``;
            ``basinhopping_niter`` hops.
        init_mode: ``NONE``/``AVG``/``LAPLACE``/``GAUSS`` (a :class:`ClipMode` or its name), ``L1``/``L2``/
            ``L3``, or a callable ``loss(float_out, quant_out) -> float``.
        init_method: the minimiser of the ``L_p`` initialisation.
        search_clipping: search clipping values (one per symmetric tensor, min and max per asymmetric one)
            instead of scales.
        minimizer_kwargs: more keyword arguments for ``scipy.optimize.minimize`` (``options`` are merged).

    Returns:
        ``(model, params)``: the prepared model set to the best parameters found (also
        ``quantizer.model``), and those parameters as ``{module: {buffer: float}}`` (scales and zero
        points of the searched tensors, plain ``dict``/``float`` for ``yaml.safe_dump``;
        :func:`apply_quant_params` writes them into a prepared model). Nothing is written to disk.
    """
    opt = _import_scipy()
    _check_quantizer(quantizer)
    mode = _init_mode(init_mode)
    float_model = copy.deepcopy(quantizer.model).eval() if not isinstance(mode, ClipMode) else None
    model, tensors = _prepare(quantizer, dummy_input, search_clipping)
    _initialise(quantizer, tensors, mode, _init_name(init_mode), init_method, float_model, dummy_input, eval_fn)
    del float_model

    vector = _Vector(tensors.used, search_clipping)
    fixed = len(tensors.used) - len(vector.tensors)
    log.info(
        "LAPQ: searching %d %s over %d layers%s",
        len(vector.keys),
        "clipping values" if search_clipping else "scales",
        len(tensors.order),
        f" ({fixed} per-channel weight scales kept)" if fixed else "",
    )
    x0 = vector.get()
    state: dict[str, Any] = {"loss": math.inf, "x": x0.copy(), "evals": 0, "steps": 0}

    def objective(vec: np.ndarray) -> float:
        vec = np.atleast_1d(np.asarray(vec, dtype=np.float64))
        if not vector.set(vec):
            return _INVALID
        with torch.no_grad():
            loss = float(eval_fn(model))
        state["evals"] += 1
        if not math.isfinite(loss):
            return _INVALID
        if loss < state["loss"]:
            state["loss"], state["x"] = loss, vec.copy()
        if state["evals"] % 20 == 0:
            log.debug("LAPQ: %d evaluations, loss %.6f (best %.6f)", state["evals"], loss, state["loss"])
        return loss

    init_loss = objective(x0)
    log.info("LAPQ: loss after %s initialisation: %.6f", _init_name(init_mode), init_loss)
    _test(test_fn, model, "initialisation")

    def callback(xk: np.ndarray, *args: Any) -> None:
        state["steps"] += 1
        log.info("LAPQ step %d: best loss %.6f (%d evaluations)", state["steps"], state["loss"], state["evals"])
        if test_fn is not None and vector.set(np.atleast_1d(np.asarray(xk, dtype=np.float64))):
            _test(test_fn, model, f"step {state['steps']}")

    options = dict((minimizer_kwargs or {}).get("options") or {})
    if maxiter is not None:
        options["maxiter"] = maxiter
    if maxfev is not None:
        options["maxfev"] = maxfev
    kwargs = {k: v for k, v in (minimizer_kwargs or {}).items() if k != "options"}
    kwargs.update(method=method, options=options)
    if basinhopping:
        log.info("LAPQ: basin hopping (%d hops) with local method %s", basinhopping_niter, method)
        opt.basinhopping(objective, x0, niter=basinhopping_niter, callback=callback, minimizer_kwargs=kwargs)
    else:
        log.info("LAPQ: minimising with %s", method)
        opt.minimize(objective, x0, callback=callback, **kwargs)

    vector.set(state["x"])
    params = _vector_to_params(vector)
    log.info("LAPQ done: loss %.6f -> %.6f after %d evaluations", init_loss, state["loss"], state["evals"])
    _test(test_fn, model, "final")
    return model, params


def _test(test_fn: Callable[[nn.Module], Any] | None, model: nn.Module, when: str) -> None:
    if test_fn is None:
        return
    with torch.no_grad():
        result = test_fn(model)
    log.info("LAPQ test (%s): %s", when, result)
