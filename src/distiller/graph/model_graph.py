"""ModelGraph: the operations of a model, their shapes, parameters and MACs, and graph queries.

Nodes are named as ``named_modules()`` spells module names (``layer1.0.conv1``). A module called
several times gets ``#1``, ``#2``, ... after its name for the later calls. Functional operations are
named after the module whose ``forward`` ran them: ``layer1.0.add`` for ``out + identity`` inside
``layer1.0``; an operation that is the whole ``forward`` of a childless module (``EltwiseAdd``) takes
that module's name.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from distiller.errors import GraphError
from distiller.graph.capture import capture_by_hooks, trace_fx
from distiller.graph.macs import matmul_macs, module_macs
from distiller.naming import normalize_module_name

_FUNCTION_NAMES = {
    operator.add: "add",
    operator.iadd: "add",
    operator.mul: "mul",
    operator.imul: "mul",
    operator.sub: "sub",
    operator.truediv: "div",
    operator.getitem: "getitem",
    operator.matmul: "matmul",
    operator.floordiv: "floordiv",
    operator.neg: "neg",
}


@dataclass
class GraphNode:
    """One operation of the model."""

    name: str
    op_type: str  # module class name (``Conv2d``) or function/method name (``add``, ``flatten``)
    kind: str  # "input", "module", "function", "method", "constant" or "output"
    module_name: str | None = None  # the module called (kind "module") or whose forward ran the op
    inputs: list[str] = field(default_factory=list)
    input_shapes: list[tuple[int, ...] | None] = field(default_factory=list)
    output_shape: tuple[int, ...] | None = None
    params: list[str] = field(default_factory=list)  # canonical names of the called module's own parameters
    macs: int = 0
    fx_node: Any = field(default=None, repr=False, compare=False)


def example_input(
    model: nn.Module, dataset: str | None = None, batch_size: int = 1, device: torch.device | str | None = None
) -> torch.Tensor:
    """A random input of the shape the model takes: ``model.input_shape``, or the dataset's.

    Raises:
        GraphError: neither the model nor ``dataset`` tells the input shape.
    """
    from distiller.models import DATASET_INFO  # the zoo imports heavy modules; graph users may not need them

    shape = getattr(model, "input_shape", None) or getattr(getattr(model, "module", None), "input_shape", None)
    if dataset is not None:
        if dataset not in DATASET_INFO:
            raise GraphError(f"Unknown dataset {dataset!r}; known: {', '.join(DATASET_INFO)}.")
        shape = DATASET_INFO[dataset][0]
    if shape is None:
        raise GraphError(
            f"Cannot tell the input shape of {type(model).__name__}: it has no 'input_shape' and no dataset was "
            "given. Pass dataset=... or an example input tensor."
        )
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    return torch.randn((batch_size, *shape), generator=generator).to(device)


def _shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _base_name(node: fx.Node) -> str:
    if node.op == "call_function":
        return _FUNCTION_NAMES.get(node.target, getattr(node.target, "__name__", str(node.target)))
    return str(node.target)


class ModelGraph:
    """The dataflow graph of ``model`` run on ``example_input`` (a batch; shapes and MACs are per sample).

    Built with ``torch.fx``; if the model does not trace, from module hooks (``traced`` is then False:
    functional operations are missing and channel coupling cannot be computed).
    """

    def __init__(self, model: nn.Module, example_input: torch.Tensor, *, allow_fallback: bool = True) -> None:
        if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
            model = model.module  # the wrapper only scatters; names are canonical anyway
        self.model = model
        self.example_input = example_input
        self.nodes: dict[str, GraphNode] = {}
        self.fx_module: fx.GraphModule | None = None
        self.trace_error: str | None = None
        try:
            self.fx_module = trace_fx(model, example_input)
        except GraphError as e:
            if not allow_fallback or "example input" in str(e):
                raise
            self.trace_error = str(e)
            self._build_from_hooks()
        else:
            self._build_from_fx(self.fx_module)
        self._successors: dict[str, list[str]] = {name: [] for name in self.nodes}
        for node in self.nodes.values():
            for src in node.inputs:
                self._successors[src].append(node.name)

    @property
    def traced(self) -> bool:
        return self.fx_module is not None

    # --- construction -------------------------------------------------------------------------------

    def _build_from_fx(self, gm: fx.GraphModule) -> None:
        modules = dict(self.model.named_modules())
        calls: Counter[str] = Counter()
        self._fx_names: dict[fx.Node, str] = {}
        for node in gm.graph.nodes:
            name, kind, module_name, op_type, params, macs = self._describe(node, modules, calls)
            graph_node = GraphNode(
                name=name,
                op_type=op_type,
                kind=kind,
                module_name=module_name,
                inputs=[self._fx_names[n] for n in node.all_input_nodes],
                input_shapes=[_shape(n) for n in node.all_input_nodes],
                output_shape=_shape(node),
                params=params,
                macs=macs,
                fx_node=node,
            )
            self._fx_names[node] = name
            self.nodes[name] = graph_node

    def _describe(self, node: fx.Node, modules: dict[str, nn.Module], calls: Counter[str]):
        params: list[str] = []
        macs = 0
        if node.op == "placeholder":
            return node.name, "input", None, "input", params, macs
        if node.op == "output":
            return "output", "output", None, "output", params, macs
        if node.op == "call_module":
            target = str(node.target)
            module = modules[target]
            canonical = normalize_module_name(target)
            calls[canonical] += 1
            name = canonical if calls[canonical] == 1 else f"{canonical}#{calls[canonical] - 1}"
            params = [f"{canonical}.{p}" if canonical else p for p, _ in module.named_parameters(recurse=False)]
            in_shape = _shape(node.all_input_nodes[0]) if node.all_input_nodes else None
            macs = module_macs(module, in_shape, _shape(node))
            return name, "module", canonical, type(module).__name__, params, macs
        base = _base_name(node)
        stack = node.meta.get("nn_module_stack") or {}
        owner = normalize_module_name(next(reversed(stack))) if stack else ""
        owner_module = modules.get(owner) if owner else None
        if owner_module is not None and not list(owner_module.children()):
            stem = owner  # the op is (part of) a childless module's forward, e.g. EltwiseAdd
        else:
            stem = f"{owner}.{base}" if owner else base
        calls[stem] += 1
        name = stem if calls[stem] == 1 else f"{stem}#{calls[stem] - 1}"
        kind = {"call_function": "function", "call_method": "method", "get_attr": "constant"}[node.op]
        if base in ("matmul", "bmm") and len(node.all_input_nodes) == 2:
            a = _shape(node.all_input_nodes[0])
            out = _shape(node)
            if a is not None and out is not None:
                macs = matmul_macs(out, a[-1])
        return name, kind, owner or None, base, params, macs

    def _build_from_hooks(self) -> None:
        calls = capture_by_hooks(self.model, self.example_input)
        counts: Counter[str] = Counter()
        self.nodes["input"] = GraphNode("input", "input", "input", output_shape=tuple(self.example_input.shape))
        names = []
        for call in calls:
            canonical = normalize_module_name(call.module_name)
            counts[canonical] += 1
            name = canonical if counts[canonical] == 1 else f"{canonical}#{counts[canonical] - 1}"
            names.append(name)
            params = [f"{canonical}.{p}" for p, _ in call.module.named_parameters(recurse=False)]
            in_shape = call.input_shapes[0] if call.input_shapes else None
            self.nodes[name] = GraphNode(
                name,
                type(call.module).__name__,
                "module",
                canonical,
                inputs=["input" if i < 0 else names[i] for i in call.inputs],
                input_shapes=list(call.input_shapes),
                output_shape=call.output_shape,
                params=params,
                macs=module_macs(call.module, in_shape, call.output_shape),
            )

    # --- queries --------------------------------------------------------------------------------------

    def __contains__(self, name: str) -> bool:
        return name in self.nodes

    def __getitem__(self, name: str) -> GraphNode:
        try:
            return self.nodes[name]
        except KeyError:
            from distiller.registry import did_you_mean

            raise GraphError(f"The graph has no node {name!r}.{did_you_mean(name, list(self.nodes))}") from None

    def find_op(self, name: str) -> GraphNode | None:
        return self.nodes.get(name)

    def node_of_fx(self, node: fx.Node) -> GraphNode:
        return self.nodes[self._fx_names[node]]

    def _walk(self, name: str, step, types: Iterable[str] | None) -> list[str]:
        start = self[name]
        if types is None:
            return list(step(start.name))
        wanted = set(types)
        found: list[str] = []
        seen = {start.name}
        stack = list(reversed(step(start.name)))
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            if self.nodes[current].op_type in wanted:
                found.append(current)
            else:
                stack.extend(reversed(step(current)))
        return found

    def predecessors(self, name: str, types: Iterable[str] | None = None) -> list[str]:
        """Direct inputs of ``name``; with ``types``, the nearest upstream ops of those types
        (searching through ops of other types, like the original's ``predecessors_f``)."""
        return self._walk(name, lambda n: self.nodes[n].inputs, types)

    def successors(self, name: str, types: Iterable[str] | None = None) -> list[str]:
        """Direct consumers of ``name``; with ``types``, the nearest downstream ops of those types."""
        return self._walk(name, lambda n: self._successors[n], types)

    def adjacency_map(self, dedicated_modules_only: bool = False) -> dict[str, tuple[list[str], list[str]]]:
        """{op: (predecessors, successors)}; with ``dedicated_modules_only``, only module calls, linked
        through any functional ops between them."""
        if not dedicated_modules_only:
            return {n: (list(node.inputs), list(self._successors[n])) for n, node in self.nodes.items()}
        module_types = {node.op_type for node in self.nodes.values() if node.kind == "module"}
        return {
            n: (self.predecessors(n, module_types), self.successors(n, module_types))
            for n, node in self.nodes.items()
            if node.kind == "module"
        }

    def layers_topological_order(self) -> list[str]:
        """Names of the called modules in execution order (each once)."""
        return list(dict.fromkeys(node.module_name for node in self.nodes.values() if node.kind == "module"))

    def named_params_layers(self) -> list[tuple[str, str]]:
        """(layer name, parameter name) for every parameter used by a module call."""
        seen: dict[str, str] = {}
        for node in self.nodes.values():
            for p in node.params:
                seen.setdefault(p, node.module_name or node.name)
        return [(layer, p) for p, layer in seen.items()]

    def param_layer(self, param_name: str) -> str:
        """The layer that owns ``param_name`` (canonical or with ``module.``)."""
        canonical = normalize_module_name(param_name)
        for layer, p in self.named_params_layers():
            if p == canonical:
                return layer
        raise GraphError(f"No layer of the graph uses parameter {param_name!r}.")

    def ops_of_type(self, *types: str) -> list[GraphNode]:
        return [n for n in self.nodes.values() if n.op_type in types]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(src, node.name) for node in self.nodes.values() for src in node.inputs]

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes.values())

    def module(self, node: GraphNode | str) -> nn.Module:
        node = self[node] if isinstance(node, str) else node
        if node.kind != "module":
            raise GraphError(f"{node.name} is a {node.kind} op, not a module call.")
        return self.model.get_submodule(self._raw_module_name(node.module_name))

    def _raw_module_name(self, canonical: str) -> str:
        for raw, _ in self.model.named_modules():
            if normalize_module_name(raw) == canonical:
                return raw
        raise GraphError(f"The model has no module {canonical!r}.")


def build_graph(
    model: nn.Module, dataset: str | None = None, example: torch.Tensor | None = None, **kwargs: Any
) -> ModelGraph:
    """``ModelGraph`` of ``model`` on ``example`` or on a batch of one from ``dataset``/``model.input_shape``."""
    if example is None:
        example = example_input(model, dataset)
    return ModelGraph(model, example, **kwargs)


def nodes_of(graph: ModelGraph, names: Sequence[str]) -> list[GraphNode]:
    return [graph[n] for n in names]
