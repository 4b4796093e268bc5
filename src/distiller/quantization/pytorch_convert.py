"""Conversion of a post-training-quantized model to PyTorch's native quantized modules (``--qe-convert-pytorch``).

:func:`convert_to_pytorch` turns a static-mode (calibrated) :class:`~distiller.quantization.PostTrainLinearQuantizer`
model, whose wrappers simulate integer arithmetic on float tensors, into a model of
``torch.ao.nn.quantized`` modules that computes on ``quint8``/``qint8`` tensors with the backend's integer
kernels (``fbgemm``/``x86`` or ``qnnpack``, CPU only), using the very scales and zero points of the simulation:

* ``Conv1d/2d/3d`` and ``Linear`` wrappers become ``nnq.Conv1d/2d/3d`` / ``nnq.Linear``, or the fused
  ``nniq.ConvReLU1d/2d/3d`` / ``nniq.LinearReLU`` when a ReLU was fused into them (``clip_half_range``);
  weights are ``qint8`` (per channel with ``per_channel_wts``), biases stay float (the kernels quantize
  them to the accumulator's scale, as the simulation does);
* element-wise add / multiply, concatenation and matrix products become :class:`QFunctionalAdd`,
  :class:`QFunctionalMul`, :class:`QFunctionalCat`, :class:`QFunctionalMatmul` (``nnq.QFunctional``);
* ReLU, ReLU6, Hardtanh, max and average pooling, flatten, dropout, identities and the shape operations of
  the ``forward`` (``flatten``, ``view``, ``reshape``, ``permute``, ...) run on the quantized tensors;
  LeakyReLU, Hardswish, ELU, Sigmoid and Softmax become their ``nnq`` modules;
* everything else runs in float: ``nnq.DeQuantize`` before it and, where the simulation quantized its
  output, ``nnq.Quantize`` after it. The model's inputs are quantized by ``nnq.Quantize`` stubs with the
  parameters of the first quantized layer, and its outputs dequantized, so the converted model takes and
  returns float32 tensors.

Activations are ``quint8`` (with ``reduce_range``, a 7-bit grid, for the ``fbgemm``/``x86`` backends,
whose kernels can saturate 16-bit intermediate sums without it on processors lacking VNNI; pass
``reduce_range=False`` on VNNI processors for the simulation's exact grids); signed Distiller values move
up by 128, an exact change of representation. A 7-bit grid has half the resolution, and values beyond
the calibrated range are clipped at twice that range instead of at its end (PyTorch clamps to the full
8-bit type), so reduced-range results deviate more from the simulation than full-range ones.

The prepared model is a ``torch.fx.GraphModule`` (:func:`~distiller.quantization.modularize`); the
conversion runs the simulated model once on ``dummy_input`` to see which tensors carry quantization
metadata (a wrapper re-uses its producer's parameters when they do), rewrites the graph with the
quantize / dequantize stubs the data flow needs (so no redundant dequantize → quantize pair is created),
and runs the result once on ``dummy_input`` as a check.

Saving: ``torch.save`` of the converted GraphModule does not load back (PyTorch cannot unpickle a
GraphModule holding quantized convolutions); keep its ``state_dict`` (it loads into a fresh conversion),
or save the simulated model and convert again, as the quantized checkpoints of ``classify`` do. The
result runs with the quantized engine it was converted for (``torch.backends.quantized.engine``).

``torch.ao.nn.quantized`` is deprecated as of PyTorch 2.14; the conversion warns (``FutureWarning``) and
points to the supported deployment path, :func:`distiller.quantization.export_onnx` (``--export-onnx``).
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.ao.nn.intrinsic.quantized as nniq
import torch.ao.nn.quantized as nnq
from torch import fx, nn

from distiller.errors import QuantizationError
from distiller.quantization.pytorch_qmodules import (  # noqa: F401 - re-exported
    _INT_DTYPES,
    QFunctionalAdd,
    QFunctionalCat,
    QFunctionalMatmul,
    QFunctionalMul,
    _activation_qparams,
    _infer_mode,
    _QFunctionalModule,
    distiller_quantized_tensor_to_pytorch,
)
from distiller.quantization.settings import TensorQuantMetadata

__all__ = [
    "SUPPORTED_BACKENDS",
    "QFunctionalAdd",
    "QFunctionalCat",
    "QFunctionalMatmul",
    "QFunctionalMul",
    "convert_to_pytorch",
    "distiller_quantized_tensor_to_pytorch",
]

#: ``--qe-pytorch-backend`` values (``x86`` is PyTorch's successor of ``fbgemm``).
SUPPORTED_BACKENDS = ("fbgemm", "x86", "qnnpack")
_REDUCE_RANGE_BACKENDS = ("fbgemm", "x86")

DEPRECATION_MESSAGE = (
    "convert_to_pytorch (--qe-convert-pytorch) builds torch.ao.nn.quantized modules, which PyTorch deprecated "
    "in 2.14 and will remove; the converted model works with this PyTorch but may not with later ones. "
    "For deployment use the int8 ONNX export instead: distiller.quantization.export_onnx(model, path) "
    "(CLI: --export-onnx), run by ONNX Runtime with integer kernels."
)

# torch's own deprecation notice for quantize_per_tensor & co. (our warning above covers it)
_TORCH_QTENSOR_WARNING = ".*quantized tensor creation functions"

_EXACT_MODULE_TYPES = (
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Flatten,
    nn.Unflatten,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Threshold,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
    nn.PixelShuffle,
    nn.PixelUnshuffle,
    nn.ChannelShuffle,
)


# Averaging: run on quantized tensors, the result rounded onto the input's grid.
_AVERAGING_MODULE_TYPES = (
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


def _runs_quantized(module: nn.Module) -> bool:
    if isinstance(module, nn.Upsample):
        return module.mode == "nearest"
    return isinstance(module, _EXACT_MODULE_TYPES + _AVERAGING_MODULE_TYPES)


def _nnq_with_output_params(module: nn.Module, scale: float, zero_point: int) -> nn.Module | None:
    """The ``nnq`` module computing ``module`` onto the given output parameters, if there is one."""
    if type(module) is nn.LeakyReLU:
        return nnq.LeakyReLU(scale, zero_point, module.negative_slope)
    if type(module) is nn.Hardswish:
        return nnq.Hardswish(scale, zero_point)
    if type(module) is nn.ELU:
        return nnq.ELU(scale, zero_point, module.alpha)
    if type(module) is nn.Sigmoid:
        return nnq.Sigmoid(scale, zero_point)
    if type(module) is nn.Softmax and module.dim is not None:
        return nnq.Softmax(module.dim, scale, zero_point)
    return None


# call_function / call_method targets that run on a quantized tensor and keep its grid (or return shapes)
_SHAPE_FUNCTIONS = {
    torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.permute, torch.transpose, torch.t,
}  # fmt: skip
_SHAPE_METHODS = {
    "flatten", "view", "reshape", "permute", "transpose", "t", "squeeze", "unsqueeze", "contiguous", "size",
    "dim", "numel", "expand", "expand_as", "view_as", "reshape_as", "detach",
}  # fmt: skip
_VALUE_FUNCTIONS = {torch.relu, torch.nn.functional.relu}


def _is_basic_index(index: Any) -> bool:
    if isinstance(index, tuple):
        return all(_is_basic_index(i) for i in index)
    return index is None or index is Ellipsis or isinstance(index, int | slice)


# -- the conversion -------------------------------------------------------------------------------
@dataclass
class _Value:
    """A value of the converted graph: its node and, for a quantized tensor, its (scale, zero_point)."""

    node: fx.Node
    qparams: tuple[float, int] | None = None

    @property
    def quantized(self) -> bool:
        return self.qparams is not None


@dataclass
class _SimRecord:
    """What the simulated model produced at one node on the dummy input."""

    is_tensor: bool
    meta: TensorQuantMetadata | None


class _Recorder(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.records: dict[fx.Node, _SimRecord] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        is_tensor = isinstance(result, torch.Tensor)
        self.records[n] = _SimRecord(is_tensor, getattr(result, "quant_metadata", None) if is_tensor else None)
        return result


def _wrapper_types() -> dict[str, type]:
    from distiller.quantization import wrappers as w

    return {
        "base": w.RangeLinearQuantWrapper,
        "param": w.RangeLinearQuantParamLayerWrapper,
        "add": w.RangeLinearQuantEltwiseAddWrapper,
        "mul": w.RangeLinearQuantEltwiseMultWrapper,
        "cat": w.RangeLinearQuantConcatWrapper,
        "matmul": w.RangeLinearQuantMatmulWrapper,
        "fake": w.RangeLinearFakeQuantWrapper,
        "embedding": w.RangeLinearEmbeddingWrapper,
        "weights_only": w.WeightsOnlyQuantWrapper,
    }


def _check_convertible(model: nn.Module) -> list[str]:
    """Static mode and 8 bits everywhere, or a QuantizationError saying what to change.

    Returns the simulation settings PyTorch's kernels do not reproduce (reported as a warning).
    """
    types = _wrapper_types()
    found = False
    inexact: list[str] = []
    for name, m in model.named_modules():
        if isinstance(m, types["base"]):
            found = True
            if m.scale_approx_mult_bits is not None:
                inexact.append(f"{name}: scale_approx_mult_bits={m.scale_approx_mult_bits}")
            if m.num_bits_accum != 32:
                inexact.append(f"{name}: bits_accum={m.num_bits_accum}")
            if not m.preset_act_qparams:
                raise QuantizationError(
                    f"Cannot convert to PyTorch quantized modules: '{name}' is quantized in dynamic mode (scales "
                    "computed per batch), and PyTorch's quantized modules need fixed scales. Quantize with "
                    "calibration statistics (--qe-calibration / --qe-stats-file, or "
                    "distiller.quantize(model, config, calibration_loader))."
                )
            bits = {"activations": m.output_settings.num_bits}
            for idx, s in m.input_settings.items():
                if s.num_bits != 8:
                    bits[f"input {idx}"] = s.num_bits
            if isinstance(m, types["param"]):
                bits["weights"] = m.weight_settings.num_bits
            wrong = {k: v for k, v in bits.items() if v != 8}
            if wrong:
                what = ", ".join(f"{k}: {v} bits" for k, v in wrong.items())
                raise QuantizationError(
                    f"Cannot convert to PyTorch quantized modules: '{name}' is quantized with {what}; PyTorch's "
                    "quantized modules are 8-bit only. Quantize with bits_activations=8 and bits_parameters=8 "
                    "(--qe-bits-acts 8 --qe-bits-wts 8), or keep the layer in float with an override "
                    "(bits_activations: null, bits_weights: null)."
                )
        elif isinstance(m, types["embedding"]):
            found = True
    if not found:
        raise QuantizationError(
            "Cannot convert to PyTorch quantized modules: the model holds no quantized layers. Quantize it first "
            "(distiller.quantize(model, config, calibration_loader) or PostTrainLinearQuantizer.prepare_model)."
        )
    return inexact


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, name, module)


class _Converter:
    def __init__(
        self, sim: fx.GraphModule, root: fx.GraphModule, records: dict[fx.Node, _SimRecord], reduce_range: bool
    ) -> None:
        self.sim = sim
        self.root = root  # a copy of the simulated model: its modules are replaced in place
        self.records = records
        self.reduce_range = reduce_range
        self.graph = fx.Graph()
        self.env: dict[fx.Node, _Value] = {}
        self.dequant_cache: dict[fx.Node, fx.Node] = {}  # new quantized node -> its DeQuantize node
        self.quant_cache: dict[tuple[fx.Node, tuple[float, int]], fx.Node] = {}
        self.converted: dict[str, nn.Module] = {}  # module name -> its replacement
        self.taken = {name for name, _ in root.named_modules()}
        self.types = _wrapper_types()
        self.fallbacks: list[str] = []

    # -- helpers -----------------------------------------------------------------------------------
    def _new_module(self, base: str, module: nn.Module) -> str:
        """Add ``module`` (a stub) to the model under a free top-level name; returns the name."""
        base = base.replace(".", "_")
        name, i = base, 1
        while name in self.taken or hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        self.root.add_submodule(name, module)
        self.taken.add(name)
        return name

    def dequantized(self, qnode: fx.Node, name: str) -> fx.Node:
        """A ``DeQuantize`` of the new graph's quantized node ``qnode`` (one per node)."""
        if qnode not in self.dequant_cache:
            self.dequant_cache[qnode] = self.graph.call_module(self._new_module(name, nnq.DeQuantize()), (qnode,))
        return self.dequant_cache[qnode]

    def get_f(self, src: fx.Node, name_hint: str | None = None) -> fx.Node:
        """``src``'s value as the simulation sees it: float (dequantized if quantized)."""
        value = self.env[src]
        if not value.quantized:
            return value.node
        return self.dequantized(value.node, name_hint or f"{src.name}_dequant")

    def get_q(self, src: fx.Node, qparams: tuple[float, int]) -> fx.Node:
        """``src``'s value as a quantized tensor with ``qparams`` (quantized or re-quantized if needed)."""
        value = self.env[src]
        if value.qparams == qparams:
            return value.node
        key = (src, qparams)
        if key not in self.quant_cache:
            if not self.records[src].is_tensor:
                raise QuantizationError(f"'{src.name}' feeds a quantized layer but is not a tensor")
            f = self.get_f(src)
            suffix = "requant" if value.quantized else "quant"
            target = self._new_module(f"{src.name}_{suffix}", nnq.Quantize(qparams[0], qparams[1], torch.quint8))
            self.quant_cache[key] = self.graph.call_module(target, (f,))
        return self.quant_cache[key]

    def act_qparams(self, scale: torch.Tensor, zero_point: torch.Tensor, q_range: tuple[int, int]) -> tuple[float, int]:
        return _activation_qparams(scale, zero_point, q_range[0], q_range[1], self.reduce_range)

    def output_qparams(self, wrapper: nn.Module) -> tuple[float, int]:
        return self.act_qparams(wrapper.output_scale, wrapper.output_zero_point, wrapper.output_settings.q_range)

    def input_qparams(self, wrapper: nn.Module, idx: int, src: Any, name: str) -> tuple[float, int]:
        """The parameters the wrapper quantizes input ``idx`` with (its ``_input_params`` in static mode)."""
        over = wrapper.input_overrides.get(idx, {})
        if over.get("from_output"):
            return self.output_qparams(wrapper)
        meta = self.records[src].meta if isinstance(src, fx.Node) else None
        if meta is not None and not over:
            return self.act_qparams(meta.scale, meta.zero_point, (meta.min_q_val, meta.max_q_val))
        if idx in wrapper.input_settings:
            return self.act_qparams(
                getattr(wrapper, f"in{idx}_scale"),
                getattr(wrapper, f"in{idx}_zero_point"),
                wrapper.input_settings[idx].q_range,
            )
        if wrapper.inputs_quant_auto_fallback:
            return self.output_qparams(wrapper)
        raise QuantizationError(
            f"input {idx} of '{name}' has no statistics: collect them, give 'input_overrides', or set "
            "inputs_quant_auto_fallback"
        )

    def quantized_inputs(self, node: fx.Node, wrapper: nn.Module) -> list[fx.Node]:
        if node.kwargs:
            raise QuantizationError(f"'{node.target}' is called with keyword arguments; cannot convert it")
        out = []
        for idx, src in enumerate(node.args):
            if not isinstance(src, fx.Node):
                raise QuantizationError(f"input {idx} of '{node.target}' is a constant ({src!r}); cannot convert it")
            out.append(self.get_q(src, self.input_qparams(wrapper, idx, src, str(node.target))))
        return out

    def call(self, node: fx.Node, target: str, args: Sequence[Any], kwargs: dict | None = None) -> fx.Node:
        return self.graph.create_node("call_module", target, tuple(args), kwargs or {}, name=node.name)

    def requantize_to(
        self, node: fx.Node, new: fx.Node, current: tuple[float, int], wanted: tuple[float, int]
    ) -> _Value:
        """``new`` (quantized with ``current``) brought to ``wanted``."""
        if current == wanted:
            return _Value(new, wanted)
        deq = self.dequantized(new, f"{node.name}_dequant")
        quant = nnq.Quantize(wanted[0], wanted[1], torch.quint8)
        return _Value(self.graph.call_module(self._new_module(f"{node.name}_requant", quant), (deq,)), wanted)

    # -- the conversion ----------------------------------------------------------------------------
    def run(self) -> fx.Graph:
        for node in self.sim.graph.nodes:
            if node.op == "placeholder":
                new = self.graph.node_copy(node, lambda n: self.env[n].node)
                self.env[node] = _Value(new)
            elif node.op == "get_attr":
                self.env[node] = _Value(self.graph.node_copy(node, lambda n: self.env[n].node))
            elif node.op == "output":
                self.convert_output(node)
            elif node.op == "call_module":
                self.env[node] = self.convert_module_node(node)
            else:
                self.env[node] = self.convert_function_node(node)
        self.graph.lint()
        return self.graph

    def convert_output(self, node: fx.Node) -> None:
        """The model's outputs, dequantized (one ``output_dequant`` module for a single quantized output)."""
        quantized = [n for n in node.all_input_nodes if self.env[n].quantized]
        hint = "output_dequant" if len(quantized) == 1 else None
        args = fx.node.map_arg(node.args, lambda n: self.get_f(n, hint))
        self.graph.output(args[0], type_expr=node.type)

    def float_node(self, node: fx.Node, target: Any = None) -> _Value:
        """``node`` run in float on dequantized inputs."""
        new = self.graph.create_node(
            node.op,
            node.target if target is None else target,
            fx.node.map_arg(node.args, self.get_f),
            fx.node.map_arg(node.kwargs, self.get_f),
            name=node.name,
        )
        return _Value(new)

    def pass_through(self, node: fx.Node) -> _Value:
        """``node`` run on its (first) input as it is; a quantized input keeps its parameters."""
        first = next(iter(node.all_input_nodes), None)
        qparams = self.env[first].qparams if first is not None else None
        new = self.graph.create_node(
            node.op,
            node.target,
            fx.node.map_arg(node.args, lambda n: self.env[n].node if n is first else self.get_f(n)),
            fx.node.map_arg(node.kwargs, lambda n: self.env[n].node if n is first else self.get_f(n)),
            name=node.name,
        )
        return _Value(new, qparams if self.records[node].is_tensor else None)

    def convert_function_node(self, node: fx.Node) -> _Value:
        first = node.all_input_nodes[0] if node.all_input_nodes else None
        if first is None or not self.env[first].quantized or not node.args or node.args[0] is not first:
            return self.float_node(node)
        shape_op = (
            (node.op == "call_function" and node.target in _SHAPE_FUNCTIONS | _VALUE_FUNCTIONS)
            or (node.op == "call_method" and node.target in _SHAPE_METHODS)
            or (node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",))
            or (
                node.op == "call_function"
                and node.target is operator.getitem
                and len(node.args) == 2
                and _is_basic_index(node.args[1])
            )
        )
        if shape_op and not node.kwargs.get("inplace", False):
            return self.pass_through(node)
        return self.float_node(node)

    def convert_module_node(self, node: fx.Node) -> _Value:
        target = str(node.target)
        module = self.sim.get_submodule(target)
        t = self.types
        if isinstance(module, t["param"]):
            return self.convert_param_layer(node, target, module)
        if isinstance(module, t["add"] | t["mul"] | t["cat"] | t["matmul"]):
            return self.convert_functional(node, target, module)
        if isinstance(module, t["fake"]):
            return self.convert_fake_quant(node, target, module)
        if isinstance(module, t["base"]):
            self.fallbacks.append(f"{target} ({type(module).__name__})")
            return self.float_fake_quant(node, target, module, module.wrapped_module)
        if isinstance(module, t["embedding"]):
            self._replace(target, lambda: _dequantized_embedding(module))
            return self.float_node(node)
        if isinstance(module, t["weights_only"]):
            self._replace(target, lambda: module.wrapped_module)
            return self.float_node(node)
        if (
            _runs_quantized(module)
            and not isinstance(module, _AVERAGING_MODULE_TYPES)  # a float average is not on the input's grid
            and len(node.all_input_nodes) == 1
            and node.args
            and not node.kwargs
        ):
            return self.pass_through(node)
        return self.float_node(node)

    def _replace(self, target: str, build: Callable[[], nn.Module]) -> nn.Module:
        """The converted module of ``target`` (built once), put in place of the wrapper."""
        if target not in self.converted:
            self.converted[target] = build()
            _set_submodule(self.root, target, self.converted[target])
        return self.converted[target]

    def convert_param_layer(self, node: fx.Node, target: str, wrapper: nn.Module) -> _Value:
        inputs = self.quantized_inputs(node, wrapper)
        out_q = self.output_qparams(wrapper)
        self._replace(target, lambda: _quantized_param_layer(wrapper, out_q))
        return _Value(self.call(node, target, inputs), out_q)

    def convert_functional(self, node: fx.Node, target: str, wrapper: nn.Module) -> _Value:
        t = self.types
        inputs = self.quantized_inputs(node, wrapper)
        out_q = self.output_qparams(wrapper)
        if isinstance(wrapper, t["add"]):
            relu = bool(wrapper.output_settings.clip_half_range)
            self._replace(target, lambda: QFunctionalAdd(*out_q, relu=relu))
        elif isinstance(wrapper, t["mul"]):
            self._replace(target, lambda: QFunctionalMul(*out_q))
        elif isinstance(wrapper, t["cat"]):
            self._replace(target, lambda: QFunctionalCat(*out_q, dim=wrapper.wrapped_module.dim))
        else:
            self._replace(target, lambda: QFunctionalMatmul(*out_q))
        return _Value(self.call(node, target, inputs), out_q)

    def convert_fake_quant(self, node: fx.Node, target: str, wrapper: nn.Module) -> _Value:
        inner = wrapper.wrapped_module
        single = len(node.args) == 1 and not node.kwargs and isinstance(node.args[0], fx.Node)
        src = node.args[0] if single else None
        meta = self.records[src].meta if single else None
        if single and wrapper.keeps_input_params and meta is not None:
            # the simulation passes the quantized values through with the input's parameters
            qparams = self.act_qparams(meta.scale, meta.zero_point, (meta.min_q_val, meta.max_q_val))
            module = self._replace(target, lambda: inner)
            if _runs_quantized(module):
                return _Value(self.call(node, target, [self.get_q(src, qparams)]), qparams)
            return _Value(self.call(node, target, [self.get_f(src)]))
        out_q = self.output_qparams(wrapper)
        if single and _runs_quantized(inner):
            in_q = self.input_qparams(wrapper, 0, src, target)
            self._replace(target, lambda: inner)
            new = self.call(node, target, [self.get_q(src, in_q)])
            return self.requantize_to(node, new, in_q, out_q)
        if single and _nnq_with_output_params(inner, *out_q) is not None:
            in_q = self.input_qparams(wrapper, 0, src, target)
            self._replace(target, lambda: _nnq_with_output_params(inner, *out_q))
            return _Value(self.call(node, target, [self.get_q(src, in_q)]), out_q)
        return self.float_fake_quant(node, target, wrapper, inner)

    def float_fake_quant(self, node: fx.Node, target: str, wrapper: nn.Module, inner: nn.Module) -> _Value:
        """Dequantized inputs (on the wrapper's input grids) → the float module → quantized output."""
        args = []
        for idx, src in enumerate(node.args):
            if not isinstance(src, fx.Node):
                args.append(src)
                continue
            in_q = self.input_qparams(wrapper, idx, src, target)
            value = self.env[src]
            on_grid = (
                not value.quantized and self.records[src].meta is not None and not wrapper.input_overrides.get(idx)
            )
            args.append(value.node if on_grid else self.dequantized(self.get_q(src, in_q), f"{src.name}_dequant"))
        if node.kwargs:
            raise QuantizationError(f"'{target}' is called with keyword arguments; cannot convert it")
        self._replace(target, lambda: inner)
        new = self.call(node, target, args)
        out_q = self.output_qparams(wrapper)
        quant = self.graph.call_module(
            self._new_module(f"{node.name}_quant", nnq.Quantize(out_q[0], out_q[1], torch.quint8)), (new,)
        )
        return _Value(quant, out_q)


def _dequantized_embedding(wrapper: nn.Module) -> nn.Embedding:
    from distiller.quantization.linear import linear_dequantize

    emb = copy.deepcopy(wrapper.wrapped_module)
    emb.weight.data = linear_dequantize(emb.weight.data, wrapper.w_scale, wrapper.w_zero_point)
    return emb


def _quantized_param_layer(wrapper: nn.Module, out_q: tuple[float, int]) -> nn.Module:
    """``nnq.Conv1d/2d/3d``, ``nnq.Linear`` (or the ReLU-fused ones) with the wrapper's integer weights."""
    m = wrapper.wrapped_module
    ws = wrapper.weight_settings
    per_channel = wrapper.w_scale.numel() > 1
    weight = distiller_quantized_tensor_to_pytorch(
        m.weight.detach(), wrapper.w_scale, wrapper.w_zero_point, ws.num_bits, ws.mode, torch.qint8, per_channel, 0
    )
    relu = bool(wrapper.output_settings.clip_half_range)
    bias = m.bias.detach().float().cpu() if m.bias is not None else None
    if isinstance(m, nn.Linear):
        if relu:
            q = nniq.LinearReLU(m.in_features, m.out_features, bias=bias is not None)
        else:
            q = nnq.Linear(m.in_features, m.out_features, bias_=bias is not None)
    else:
        classes = [
            (nn.Conv1d, nnq.Conv1d, nniq.ConvReLU1d),
            (nn.Conv2d, nnq.Conv2d, nniq.ConvReLU2d),
            (nn.Conv3d, nnq.Conv3d, nniq.ConvReLU3d),
        ]
        cls = next(fused if relu else plain for kind, plain, fused in classes if isinstance(m, kind))
        if m.padding_mode != "zeros":
            raise QuantizationError(
                f"PyTorch's quantized convolutions support only zero padding; the layer uses "
                f"padding_mode={m.padding_mode!r}."
            )
        q = cls(
            m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding,
            dilation=m.dilation, groups=m.groups, bias=bias is not None,
        )  # fmt: skip
    q.set_weight_bias(weight, bias)
    q.scale = float(out_q[0])
    q.zero_point = int(out_q[1])
    return q


def _unwrap(model: nn.Module) -> nn.Module:
    while isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def convert_to_pytorch(
    model: nn.Module,
    dummy_input: torch.Tensor | Sequence[torch.Tensor],
    backend: str = "fbgemm",
    reduce_range: bool | None = None,
) -> fx.GraphModule:
    """A copy of a static-mode post-training-quantized model made of PyTorch's quantized modules.

    ``model`` is the prepared model of :class:`~distiller.quantization.PostTrainLinearQuantizer` (e.g. the
    result of :func:`distiller.quantization.quantize` with a calibration loader); it is not changed. The
    result runs on the CPU, takes and returns float32 tensors, and computes with 8-bit integer kernels
    (see the module docstring). It sets ``torch.backends.quantized.engine`` to ``backend``, which the result
    needs when it runs.

    Args:
        model: the quantized (simulated) model, static mode, 8-bit activations and weights.
        dummy_input: a batch the model accepts (a tensor, or a tuple of the model's inputs).
        backend: ``'fbgemm'``, ``'x86'`` or ``'qnnpack'``.
        reduce_range: quantize activations onto 7 bits (default: for ``fbgemm``/``x86``, which may
            saturate 16-bit intermediates with 8-bit activations on processors without VNNI).

    Returns:
        The converted ``torch.fx.GraphModule`` (same class name and module names as ``model``); its
        ``quantizer_metadata`` has ``pytorch_convert: True`` and ``pytorch_convert_backend``.

    Raises:
        QuantizationError: a dynamic-mode model, bits other than 8, an unsupported backend, a model that is
            not a ``torch.fx`` GraphModule, or a conversion that does not run on ``dummy_input``.
    """
    backend = str(backend).lower()
    if backend not in SUPPORTED_BACKENDS:
        raise QuantizationError(
            f"--qe-pytorch-backend {backend!r} is not supported; choose one of: {', '.join(SUPPORTED_BACKENDS)}."
        )
    if backend not in torch.backends.quantized.supported_engines:
        raise QuantizationError(
            f"this PyTorch build has no {backend!r} quantized engine (it has "
            f"{', '.join(torch.backends.quantized.supported_engines)}); choose another --qe-pytorch-backend."
        )
    if dummy_input is None:
        raise QuantizationError("convert_to_pytorch needs a dummy input (a batch the model accepts).")
    model = _unwrap(model)
    inexact = _check_convertible(model)
    if not isinstance(model, fx.GraphModule):
        raise QuantizationError(
            f"Cannot convert {type(model).__name__} to PyTorch quantized modules: the conversion rewrites the "
            "torch.fx graph of the quantized model, and this model did not trace with torch.fx when it was "
            "quantized. Make the model traceable (no Python control flow on tensor values in forward())."
        )
    warnings.warn(DEPRECATION_MESSAGE, FutureWarning, stacklevel=2)
    if reduce_range is None:
        reduce_range = backend in _REDUCE_RANGE_BACKENDS
    inputs = (dummy_input,) if isinstance(dummy_input, torch.Tensor) else tuple(dummy_input)
    inputs = tuple(x.detach().cpu() if isinstance(x, torch.Tensor) else x for x in inputs)

    torch.backends.quantized.engine = backend
    sim = copy.deepcopy(model).cpu().eval()
    metadata = copy.deepcopy(getattr(model, "quantizer_metadata", None))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_QTENSOR_WARNING)
        recorder = _Recorder(sim)
        with torch.no_grad():
            recorder.run(*inputs)
        root = copy.deepcopy(sim)
        converter = _Converter(sim, root, recorder.records, reduce_range)
        graph = converter.run()
        converted = fx.GraphModule(root, graph, class_name=type(model).__name__)
        converted.delete_all_unused_submodules()
        converted.recompile()
        converted.eval()
        try:
            with torch.no_grad():
                out = converted(*inputs)
        except Exception as exc:  # a quantized kernel refused an input: report where
            raise QuantizationError(
                f"the converted model does not run on the dummy input ({type(exc).__name__}: {exc})"
            ) from exc
    for value in out if isinstance(out, tuple | list) else (out,):
        if isinstance(value, torch.Tensor) and value.is_quantized:
            raise QuantizationError("the converted model returns a quantized tensor (internal error)")
    if inexact:
        warnings.warn(
            "PyTorch's quantized kernels re-quantize with exact scales and 32-bit accumulators; the converted "
            "model differs slightly from the simulation of " + ", ".join(inexact),
            stacklevel=2,
        )
    if converter.fallbacks:
        warnings.warn(
            "no PyTorch quantized equivalent for " + ", ".join(converter.fallbacks) + ": run in float on "
            "dequantized inputs",
            stacklevel=2,
        )
    for key, value in vars(sim).items():  # arch, dataset, input_shape, ...
        if key.startswith("_") or key in ("quantizer", "training") or hasattr(converted, key):
            continue
        if not isinstance(value, nn.Module | torch.Tensor):
            setattr(converted, key, value)
    if metadata is not None:
        metadata = dict(metadata)
        metadata["pytorch_convert"] = True
        metadata["pytorch_convert_backend"] = backend
        metadata["pytorch_convert_reduce_range"] = reduce_range
        converted.quantizer_metadata = metadata
    converted.pytorch_backend = backend
    return converted
