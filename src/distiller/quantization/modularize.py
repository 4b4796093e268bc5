"""Turn functional operations and re-used modules into dedicated modules, for module-based quantization.

Post-training quantization replaces *modules* (a conv, an :class:`~distiller.modules.EltwiseAdd`, a
``ReLU``) by quantized wrappers and collects statistics with module hooks. The original Distiller
therefore asked users to rewrite ``x + y`` as ``self.add(x, y)`` and to give every ReLU call its own
module (``docs/prepare_model_quant.md``). :func:`modularize` does that rewrite automatically: it
traces the model with ``torch.fx`` (in eval mode) and returns a :class:`torch.fx.GraphModule` that
computes exactly the same function, in which

* every functional operation of the table below is a call of a new module, and
* every module called more than once has a deep copy per extra call (torchvision's ``BasicBlock``
  calls ``self.relu`` twice).

================================================================  ==========================================
Functional operation (``fx`` target)                              Module
================================================================  ==========================================
``a + b``, ``a += b``, ``torch.add(a, b)``, ``a.add(b)``,          :class:`~distiller.modules.EltwiseAdd`
``a.add_(b)`` -- both operands tensors, no ``alpha``
``a * b``, ``a *= b``, ``torch.mul(a, b)``, ``a.mul(b)``,          :class:`~distiller.modules.EltwiseMult`
``a.mul_(b)`` -- both operands tensors
``torch.cat`` / ``torch.concat`` / ``torch.concatenate``          :class:`~distiller.modules.Concat` ``(dim)``
``torch.matmul``, ``a @ b``, ``a.matmul(b)``                      :class:`~distiller.modules.Matmul`
``torch.bmm``, ``a.bmm(b)``                                       :class:`~distiller.modules.BatchMatmul`
``F.relu``, ``torch.relu``, ``F.relu_``, ``torch.relu_``,         ``nn.ReLU`` (``inplace`` kept)
``a.relu()``, ``a.relu_()``
``F.relu6``, ``F.hardtanh(x, 0, 6)``                              ``nn.ReLU6``
``F.hardtanh`` (other limits), ``F.hardtanh_``                    ``nn.Hardtanh``
``torch.sigmoid``, ``F.sigmoid``, ``a.sigmoid()``                 ``nn.Sigmoid``
``torch.tanh``, ``F.tanh``, ``a.tanh()``                          ``nn.Tanh``
``F.hardswish`` / ``F.hardsigmoid`` / ``F.silu``                  ``nn.Hardswish`` / ``nn.Hardsigmoid`` /
                                                                  ``nn.SiLU``
``F.gelu``                                                        ``nn.GELU`` (``approximate`` kept)
``F.avg_pool1d/2d/3d``, ``F.max_pool1d/2d/3d``                    ``nn.AvgPool{1,2,3}d`` / ``nn.MaxPool{1,2,3}d``
                                                                  (same arguments; not ``return_indices``)
``F.adaptive_avg_pool1d/2d/3d``, ``F.adaptive_max_pool1d/2d/3d``  ``nn.AdaptiveAvgPool{1,2,3}d`` /
                                                                  ``nn.AdaptiveMaxPool{1,2,3}d``
================================================================  ==========================================

Everything else stays functional: shape operations (``flatten``, ``view``, ``reshape``, ``permute``,
``getitem``, ``size``), which do not change values, scalar arithmetic (``x * 0.5``, ``x + 1``),
operations whose arguments are computed at run time (``F.avg_pool2d(x, x.shape[2])``), and
operations not in the table (subtraction, division, softmax, ...).

**Names.** New modules are inserted under the module whose ``forward`` ran the operation, with the
name :class:`distiller.graph.ModelGraph` gives the operation: ``out += identity`` inside
``layer1.0`` becomes module ``layer1.0.add``; the second ``relu`` call of ``layer1.0`` becomes
``layer1.0.relu#1`` (``#`` is a legal attribute name for ``nn.Module`` and ``fx`` generates
``getattr(self.layer1[0], "relu#1")`` for it). So the names users see in a ``ModelGraph`` of the
original model, in statistics files and in quantizer overrides are the module names of the
modularized model, and a ``ModelGraph`` of the result gives its module calls the same names. Only if
such a name is already taken by another attribute does the module get the next free ``#k`` suffix;
:func:`module_name_for_graph_node` maps graph names to module names in every case. (Operations run by
the second call of a *container* are named as ``ModelGraph`` names them, from ``fx``'s module-stack
key: ``block@1.add``.)

**Tracing.** Modules from ``torch.nn`` and every module without children (the helpers of
:mod:`distiller.modules`, torchvision's ``FrozenBatchNorm2d``, user-written activations) are kept as
leaf calls; containers are traced through. The model is traced in eval mode, so
``if self.training`` branches take their evaluation path.
"""

from __future__ import annotations

import copy
import operator
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from distiller.errors import GraphError
from distiller.graph.capture import evaluation_mode
from distiller.graph.model_graph import _base_name
from distiller.modules import BatchMatmul, Concat, EltwiseAdd, EltwiseMult, Matmul
from distiller.naming import normalize_module_name

try:  # torchvision is a dependency, but keep this module importable without it
    from torchvision.ops.misc import FrozenBatchNorm2d as _FrozenBatchNorm2d
except ImportError:  # pragma: no cover
    _FrozenBatchNorm2d = None

__all__ = [
    "LeafTracer",
    "annotate_shapes",
    "graph_node_names",
    "modularize",
    "module_name_for_graph_node",
    "reused_modules",
    "trace_with_leaves",
]

ExampleInput = torch.Tensor | Sequence[torch.Tensor]

#: Name of the GraphModule attribute mapping graph node names of the original model to module names.
GRAPH_NODE_MODULES_ATTR = "graph_node_modules"


# --- tracing ------------------------------------------------------------------------------------------


class LeafTracer(fx.Tracer):
    """``fx`` tracer that keeps ``torch.nn`` modules and every childless module as ``call_module`` leaves.

    Containers (``nn.Sequential`` included, even an empty one) are traced through.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            return False
        return super().is_leaf_module(m, module_qualified_name) or next(m.children(), None) is None


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        return model.module
    return model


def _as_tuple(example_input: ExampleInput) -> tuple[Any, ...]:
    if isinstance(example_input, torch.Tensor):
        return (example_input,)
    return tuple(example_input)


def trace_with_leaves(model: nn.Module, example_input: ExampleInput | None = None) -> fx.GraphModule:
    """Trace ``model`` (eval mode) with :class:`LeafTracer`; with ``example_input``, annotate node shapes.

    The GraphModule shares its leaf modules with ``model``.

    Raises:
        GraphError: the model does not trace, or does not run on ``example_input``.
    """
    model = _unwrap(model)
    with evaluation_mode(model):
        try:
            graph = LeafTracer().trace(model)
        except Exception as e:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
            raise GraphError(
                f"torch.fx cannot trace {type(model).__name__}: {type(e).__name__}: {e}. Functional operations "
                "(x + y, F.relu, torch.cat) can only be turned into modules in a traceable model: avoid Python "
                "control flow on tensor values in forward(), or use distiller.modules (EltwiseAdd, Concat, ...) "
                "and one module per call yourself; module-only quantization still works without tracing."
            ) from e
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    if example_input is not None:
        annotate_shapes(gm, example_input)
    return gm


def annotate_shapes(gm: fx.GraphModule, example_input: ExampleInput) -> None:
    """Run ``gm`` (eval mode) on a copy of ``example_input``, recording each node's output type and shape
    (``meta['type']``, ``meta['tensor_meta']``).

    Raises:
        GraphError: the model does not run on ``example_input``.
    """
    inputs = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in _as_tuple(example_input))
    with evaluation_mode(gm):
        try:
            ShapeProp(gm).propagate(*inputs)
        except Exception as e:
            shapes = [tuple(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
            raise GraphError(
                f"Running {gm.__class__.__name__} on an example input of shape(s) {shapes} failed: "
                f"{type(e).__name__}: {e}. Pass an example input the model accepts."
            ) from e


def graph_node_names(gm: fx.GraphModule, model: nn.Module | None = None) -> dict[fx.Node, str]:
    """The :class:`~distiller.graph.ModelGraph` name of every node of ``gm``, traced from ``model``.

    Same rule as ``ModelGraph``: a module call is named after the module (``#k`` for its later calls);
    a functional operation after the module whose ``forward`` ran it plus the operation
    (``layer1.0.add``), with ``#k`` for repeats; one counter is shared by all names.
    """
    modules = dict(_unwrap(model if model is not None else gm).named_modules())
    calls: Counter[str] = Counter()
    names: dict[fx.Node, str] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            names[node] = node.name
            continue
        if node.op == "output":
            names[node] = "output"
            continue
        if node.op == "call_module":
            stem = normalize_module_name(str(node.target))
        else:
            base = _base_name(node)
            stack = node.meta.get("nn_module_stack") or {}
            owner = normalize_module_name(next(reversed(stack))) if stack else ""
            owner_module = modules.get(owner) if owner else None
            if owner_module is not None and next(owner_module.children(), None) is None:
                stem = owner
            else:
                stem = f"{owner}.{base}" if owner else base
        calls[stem] += 1
        names[node] = stem if calls[stem] == 1 else f"{stem}#{calls[stem] - 1}"
    return names


def reused_modules(model: nn.Module, example_input: ExampleInput | None = None) -> dict[str, int]:
    """``{module name: number of calls}`` for every leaf module that ``forward`` calls more than once.

    Raises:
        GraphError: the model does not trace.
    """
    gm = trace_with_leaves(model, example_input)
    counts = Counter(normalize_module_name(str(n.target)) for n in gm.graph.nodes if n.op == "call_module")
    return {name: calls for name, calls in counts.items() if calls > 1}


# --- rules: which functional operation becomes which module ------------------------------------------

Replacement = tuple[nn.Module, tuple[fx.Node, ...]]

# Modules whose output is a new tensor (not a view or an alias of an input): an in-place ``a += b`` on
# their single-use output can run out of place without changing anything observable.
_FRESH_OUTPUT_MODULES: tuple[type, ...] = (
    nn.modules.conv._ConvNd,
    nn.Linear,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.Embedding,
    EltwiseAdd,
    EltwiseMult,
    Concat,
    Matmul,
    BatchMatmul,
) + ((_FrozenBatchNorm2d,) if _FrozenBatchNorm2d is not None else ())
_FRESH_OUTPUT_FUNCTIONS = {operator.add, operator.mul, torch.add, torch.mul, torch.cat, torch.matmul, operator.matmul}


class _Context:
    def __init__(self, gm: fx.GraphModule) -> None:
        self.modules = dict(gm.named_modules())

    @staticmethod
    def is_tensor(arg: Any) -> bool:
        if not isinstance(arg, fx.Node):
            return False
        kind = arg.meta.get("type")
        return isinstance(kind, type) and issubclass(kind, torch.Tensor)

    def must_stay_inplace(self, node: fx.Node, target: fx.Node) -> bool:
        """Whether the in-place update of ``target`` by ``node`` may be seen by another operation."""
        if len(target.users) != 1:
            return True
        if target.op == "call_module":
            module = self.modules.get(str(target.target))
            if isinstance(module, EltwiseAdd | EltwiseMult) and module.inplace:
                return True
            return not isinstance(module, _FRESH_OUTPUT_MODULES)
        if target.op == "call_function":
            return target.target not in _FRESH_OUTPUT_FUNCTIONS
        return True


def _contains_node(value: Any) -> bool:
    found = []
    fx.node.map_aggregate(value, lambda v: found.append(v) if isinstance(v, fx.Node) else None)
    return bool(found)


def _bind(node: fx.Node, names: Sequence[str], defaults: dict[str, Any]) -> dict[str, Any] | None:
    """``node``'s arguments by parameter name (``input`` first), or None for unknown/missing ones."""
    if len(node.args) > len(names):
        return None
    bound = dict(zip(names, node.args))
    for key, value in node.kwargs.items():
        if key not in names or key in bound:
            return None
        bound[key] = value
    for key, value in defaults.items():
        bound.setdefault(key, value)
    if any(name not in bound for name in names):
        return None
    if any(_contains_node(v) for k, v in bound.items() if k not in ("input", "other", "mat2", "tensors")):
        return None  # an argument computed at run time cannot become a module attribute
    return bound


Rule = Callable[[fx.Node, _Context], Replacement | None]


def _binary(cls: type[nn.Module], *, inplace_op: bool = False, allow_alpha: bool = False) -> Rule:
    names = ("input", "other", "alpha") if allow_alpha else ("input", "other")
    defaults = {"alpha": 1} if allow_alpha else {}

    def rule(node: fx.Node, ctx: _Context) -> Replacement | None:
        bound = _bind(node, names, defaults)
        if bound is None or bound.get("alpha", 1) != 1:
            return None
        a, b = bound["input"], bound["other"]
        if not (ctx.is_tensor(a) and ctx.is_tensor(b)):
            return None  # scalar arithmetic stays functional
        inplace = inplace_op and ctx.must_stay_inplace(node, a)
        if cls in (EltwiseAdd, EltwiseMult):
            return cls(inplace=inplace), (a, b)
        return cls(), (a, b)

    return rule


def _matmul(cls: type[nn.Module], second: str) -> Rule:
    def rule(node: fx.Node, ctx: _Context) -> Replacement | None:
        bound = _bind(node, ("input", second), {})
        if bound is None or not (ctx.is_tensor(bound["input"]) and ctx.is_tensor(bound[second])):
            return None
        return cls(), (bound["input"], bound[second])

    return rule


def _unary(
    factory: Callable[..., nn.Module],
    params: Sequence[str] = (),
    defaults: dict[str, Any] | None = None,
    **fixed: Any,
) -> Rule:
    """``factory(**params, **fixed)`` applied to the single tensor input."""
    names = ("input", *params)

    def rule(node: fx.Node, ctx: _Context) -> Replacement | None:
        bound = _bind(node, names, defaults or {})
        if bound is None or not ctx.is_tensor(bound["input"]):
            return None
        source = bound.pop("input")
        try:
            module = factory(**bound, **fixed)
        except (TypeError, ValueError):
            return None
        return (module, (source,)) if module is not None else None

    return rule


def _hardtanh(min_val: float, max_val: float, inplace: bool) -> nn.Module:
    if min_val == 0.0 and max_val == 6.0:
        return nn.ReLU6(inplace=inplace)
    return nn.Hardtanh(min_val, max_val, inplace=inplace)


def _max_pool(cls: type[nn.Module]) -> Callable[..., nn.Module | None]:
    def make(kernel_size, stride, padding, dilation, ceil_mode, return_indices):
        if return_indices:
            return None  # the caller unpacks (values, indices): leave it functional
        return cls(kernel_size, stride, padding, dilation, return_indices=False, ceil_mode=ceil_mode)

    return make


def _adaptive_max_pool(cls: type[nn.Module]) -> Callable[..., nn.Module | None]:
    def make(output_size, return_indices):
        return None if return_indices else cls(output_size)

    return make


def _concat(node: fx.Node, ctx: _Context) -> Replacement | None:
    kwargs = dict(node.kwargs)
    if "axis" in kwargs:  # torch.concatenate spells dim as axis
        kwargs["dim"] = kwargs.pop("axis")
    if len(node.args) > 2 or any(k != "dim" for k in kwargs):
        return None
    tensors = node.args[0] if node.args else None
    dim = node.args[1] if len(node.args) > 1 else kwargs.get("dim", 0)
    if not isinstance(tensors, list | tuple) or not tensors or not all(ctx.is_tensor(t) for t in tensors):
        return None
    if not isinstance(dim, int):
        return None
    return Concat(dim), tuple(tensors)


_POOL_AVG = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_POOL_AVG_DEFAULTS = {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True}
_POOL_MAX = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
_POOL_MAX_DEFAULTS = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}

_FUNCTION_RULES: dict[Any, Rule] = {
    operator.add: _binary(EltwiseAdd),
    operator.iadd: _binary(EltwiseAdd, inplace_op=True),
    torch.add: _binary(EltwiseAdd, allow_alpha=True),
    operator.mul: _binary(EltwiseMult),
    operator.imul: _binary(EltwiseMult, inplace_op=True),
    torch.mul: _binary(EltwiseMult),
    torch.cat: _concat,
    torch.concat: _concat,
    torch.concatenate: _concat,
    torch.matmul: _matmul(Matmul, "other"),
    operator.matmul: _matmul(Matmul, "other"),
    torch.bmm: _matmul(BatchMatmul, "mat2"),
    F.relu: _unary(nn.ReLU, ("inplace",), {"inplace": False}),
    torch.relu: _unary(nn.ReLU),
    torch.relu_: _unary(nn.ReLU, inplace=True),  # F.relu_ is torch.relu_
    F.relu6: _unary(nn.ReLU6, ("inplace",), {"inplace": False}),
    F.hardtanh: _unary(
        _hardtanh, ("min_val", "max_val", "inplace"), {"min_val": -1.0, "max_val": 1.0, "inplace": False}
    ),
    F.hardtanh_: _unary(_hardtanh, ("min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0}, inplace=True),
    torch.sigmoid: _unary(nn.Sigmoid),
    F.sigmoid: _unary(nn.Sigmoid),
    torch.tanh: _unary(nn.Tanh),
    F.tanh: _unary(nn.Tanh),
    F.hardswish: _unary(nn.Hardswish, ("inplace",), {"inplace": False}),
    F.hardsigmoid: _unary(nn.Hardsigmoid, ("inplace",), {"inplace": False}),
    F.silu: _unary(nn.SiLU, ("inplace",), {"inplace": False}),
    F.gelu: _unary(nn.GELU, ("approximate",), {"approximate": "none"}),
    F.avg_pool1d: _unary(nn.AvgPool1d, _POOL_AVG, _POOL_AVG_DEFAULTS),
    F.avg_pool2d: _unary(
        nn.AvgPool2d, (*_POOL_AVG, "divisor_override"), {**_POOL_AVG_DEFAULTS, "divisor_override": None}
    ),
    F.avg_pool3d: _unary(
        nn.AvgPool3d, (*_POOL_AVG, "divisor_override"), {**_POOL_AVG_DEFAULTS, "divisor_override": None}
    ),
    F.max_pool1d: _unary(_max_pool(nn.MaxPool1d), _POOL_MAX, _POOL_MAX_DEFAULTS),
    F.max_pool2d: _unary(_max_pool(nn.MaxPool2d), _POOL_MAX, _POOL_MAX_DEFAULTS),
    F.max_pool3d: _unary(_max_pool(nn.MaxPool3d), _POOL_MAX, _POOL_MAX_DEFAULTS),
    F.adaptive_avg_pool1d: _unary(nn.AdaptiveAvgPool1d, ("output_size",)),
    F.adaptive_avg_pool2d: _unary(nn.AdaptiveAvgPool2d, ("output_size",)),
    F.adaptive_avg_pool3d: _unary(nn.AdaptiveAvgPool3d, ("output_size",)),
    F.adaptive_max_pool1d: _unary(
        _adaptive_max_pool(nn.AdaptiveMaxPool1d), ("output_size", "return_indices"), {"return_indices": False}
    ),
    F.adaptive_max_pool2d: _unary(
        _adaptive_max_pool(nn.AdaptiveMaxPool2d), ("output_size", "return_indices"), {"return_indices": False}
    ),
    F.adaptive_max_pool3d: _unary(
        _adaptive_max_pool(nn.AdaptiveMaxPool3d), ("output_size", "return_indices"), {"return_indices": False}
    ),
}

_METHOD_RULES: dict[str, Rule] = {
    "add": _binary(EltwiseAdd, allow_alpha=True),
    "add_": _binary(EltwiseAdd, inplace_op=True, allow_alpha=True),
    "mul": _binary(EltwiseMult),
    "mul_": _binary(EltwiseMult, inplace_op=True),
    "matmul": _matmul(Matmul, "other"),
    "bmm": _matmul(BatchMatmul, "mat2"),
    "relu": _unary(nn.ReLU),
    "relu_": _unary(nn.ReLU, inplace=True),
    "sigmoid": _unary(nn.Sigmoid),
    "tanh": _unary(nn.Tanh),
}


def _replacement(node: fx.Node, ctx: _Context) -> Replacement | None:
    if node.op == "call_function":
        rule = _FUNCTION_RULES.get(node.target)
    elif node.op == "call_method":
        rule = _METHOD_RULES.get(str(node.target))
    else:
        return None
    return rule(node, ctx) if rule is not None else None


# --- inserting modules ---------------------------------------------------------------------------------


def _can_add(root: nn.Module, path: str) -> bool:
    """Whether ``root.add_submodule(path, ...)`` would add a new module without replacing anything."""
    *parents, leaf = path.split(".")
    current: Any = root
    for part in parents:
        if not part:
            return False
        current = getattr(current, part, None)
        if current is None:
            return True  # the rest of the path is created
        if not isinstance(current, nn.Module):
            return False
    return bool(leaf) and not hasattr(current, leaf)


_SUFFIX = re.compile(r"(.+?)(?:#(\d+))?")


def _free_path(root: nn.Module, wanted: str, taken: set[str]) -> str:
    if wanted not in taken and _can_add(root, wanted):
        return wanted
    match = _SUFFIX.fullmatch(wanted)
    stem, index = match[1], int(match[2] or 0)
    while True:
        index += 1
        candidate = f"{stem}#{index}"
        if candidate not in taken and _can_add(root, candidate):
            return candidate


_USER_ATTRS_SKIPPED = {"training", "dump_patches", "call_super_init"}


def _copy_user_attributes(source: nn.Module, target: fx.GraphModule) -> None:
    """Plain public attributes of ``source`` (``arch``, ``dataset``, ``input_shape``, ...) onto ``target``."""
    for key, value in vars(source).items():
        if key.startswith("_") or key in _USER_ATTRS_SKIPPED or hasattr(target, key):
            continue
        if isinstance(value, nn.Module | torch.Tensor):
            continue
        setattr(target, key, value)


def modularize(model: nn.Module, example_input: ExampleInput) -> fx.GraphModule:
    """A GraphModule computing the same function as ``model``, with quantizable functional ops and
    re-used modules turned into dedicated modules (see the module docstring for the table and names).

    ``model`` is left untouched: the result works on a deep copy. The graph is traced in eval mode.
    Public plain attributes of ``model`` (``arch``, ``dataset``, ``input_shape``, ``num_classes``)
    are copied onto the result; its attribute ``graph_node_modules`` maps the
    :class:`~distiller.graph.ModelGraph` name of every module call of the original to the module that
    runs it in the result (see :func:`module_name_for_graph_node`).

    Like every ``torch.fx`` GraphModule, the result holds only the modules ``forward`` calls, under their
    original names; containers (``layer1``, ``layer1.0``) become plain ``nn.Module`` objects.

    Raises:
        GraphError: the model does not trace with ``torch.fx`` or does not run on ``example_input``.
            Callers can fall back to quantizing the modules of the original model.
    """
    work = copy.deepcopy(_unwrap(model))
    gm = trace_with_leaves(work, example_input)
    graph = gm.graph
    names = graph_node_names(gm, work)
    ctx = _Context(gm)
    plans = [(node, _replacement(node, ctx)) for node in graph.nodes]  # decided before any change

    taken = set(names.values())
    mapping: dict[str, str] = {}
    seen_targets: set[str] = set()
    replaced: dict[fx.Node, fx.Node] = {}  # the plans' arguments may name nodes replaced since
    for node, replacement in plans:
        name = names[node]
        if node.op == "call_module":
            target = str(node.target)
            if target not in seen_targets:
                seen_targets.add(target)
                mapping[name] = normalize_module_name(target)
                continue
            path = _free_path(gm, name, taken - {name})
            gm.add_submodule(path, copy.deepcopy(gm.get_submodule(target)))
            node.target = path
            taken.add(path)
            mapping[name] = path
        elif replacement is not None:
            module, args = replacement
            path = _free_path(gm, name, taken - {name})
            if not gm.add_submodule(path, module):  # pragma: no cover - _can_add checked the path
                raise GraphError(f"Cannot insert module {path!r} for operation {node.format_node()}.")
            taken.add(path)
            mapping[name] = path
            args = fx.node.map_arg(args, lambda n: replaced.get(n, n))
            with graph.inserting_before(node):
                new_node = graph.call_module(path, args=args)
            replaced[node] = new_node
            new_node.meta = dict(node.meta)
            node.replace_all_uses_with(new_node)
            graph.erase_node(node)
    graph.lint()
    gm.recompile()
    _copy_user_attributes(work, gm)  # from the copy: list attributes must not be shared
    setattr(gm, GRAPH_NODE_MODULES_ATTR, mapping)
    return gm


def module_name_for_graph_node(model: nn.Module, name: str) -> str:
    """The module of :func:`modularize`'s result that runs the original model's graph node ``name``.

    It is ``name`` itself (``layer1.0.add``, ``layer1.0.relu#1``) unless that name was taken by another
    attribute of the model. For a model that was not modularized, the graph name without ``#k``.

    Raises:
        GraphError: ``name`` is not a module call or modularized operation of the model.
    """
    mapping = getattr(model, GRAPH_NODE_MODULES_ATTR, None)
    if mapping is not None:
        if name in mapping:
            return mapping[name]
        from distiller.registry import did_you_mean

        raise GraphError(
            f"Graph node {name!r} is not run by a module of the modularized model.{did_you_mean(name, list(mapping))}"
        )
    module_name = _SUFFIX.fullmatch(name)[1]
    if module_name not in {normalize_module_name(n) for n, _ in _unwrap(model).named_modules()}:
        raise GraphError(f"Graph node {name!r} is not a module call of {type(model).__name__}.")
    return module_name
