"""Batch-norm folding and generic module-sequence fusion (the original's ``model_transforms.py``).

:func:`fold_batch_norms` folds every ``Conv1d/2d/3d`` (grouped and depthwise included) or ``Linear``
whose output goes only to a ``BatchNorm1d/2d/3d`` (or torchvision's ``FrozenBatchNorm2d``) into that
layer, using the BN's running statistics: with ``s = gamma / sqrt(running_var + eps)`` per output
channel, ``W' = s * W`` and ``b' = s * (b - running_mean) + beta`` (a bias is created when the layer
has none). The BN is replaced by ``nn.Identity`` in place and the layer gets the attribute
``fused_modules = [bn name]``. Post-training quantization then quantizes one layer instead of two, and
:func:`move_folded_stats` gives the layer the output statistics the BN had.

:func:`fuse_modules` is the general form: it finds chains of modules of given types in which each
module's output feeds only the next module, and lets a function replace each chain by one module.

Both work on plain models and on the GraphModules of :func:`~distiller.quantization.modularize.modularize`.
Chains are found on the ``torch.fx`` graph (a functional op between two modules breaks the chain); for
models that do not trace they are found from module hooks on ``example_input``, which cannot see
functional ops, so :func:`fold_batch_norms` then checks every fold against the model's output and undoes
those that change it.
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import fx, nn

from distiller.errors import GraphError, QuantizationError
from distiller.graph.capture import evaluation_mode
from distiller.naming import normalize_module_name
from distiller.quantization.modularize import ExampleInput, annotate_shapes, trace_with_leaves

try:
    from torchvision.ops.misc import FrozenBatchNorm2d
except ImportError:  # pragma: no cover
    FrozenBatchNorm2d = None

__all__ = ["FOLDABLE_LAYERS", "BATCH_NORMS", "fold_batch_norms", "fuse_modules", "move_folded_stats"]

log = logging.getLogger(__name__)

#: Layers a following batch norm can be folded into.
FOLDABLE_LAYERS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
#: Batch-norm types that can be folded.
BATCH_NORMS: tuple[type[nn.Module], ...] = (nn.modules.batchnorm._BatchNorm,) + (
    (FrozenBatchNorm2d,) if FrozenBatchNorm2d is not None else ()
)

TypeSpec = type | tuple[type, ...]
# internal fusion function: (modules, output shapes or None) -> fused module or None
_FuseFn = Callable[[list[nn.Module], list[tuple[int, ...] | None]], nn.Module | None]


# --- finding chains -------------------------------------------------------------------------------------


class _Chain:
    def __init__(self, names: list[str], modules: list[nn.Module], shapes: list[tuple[int, ...] | None]) -> None:
        self.names = names  # raw module paths, relative to the unwrapped model
        self.modules = modules
        self.shapes = shapes


def _unwrap(model: nn.Module) -> nn.Module:
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        return model.module
    return model


def _node_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _chains_in_graph(gm: fx.GraphModule, types: Sequence[TypeSpec]) -> list[_Chain]:
    modules = dict(gm.named_modules())
    calls = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")

    def matches(node: fx.Node, position: int) -> bool:
        return (
            node.op == "call_module"
            and calls[str(node.target)] == 1
            and isinstance(modules[str(node.target)], types[position])
        )

    chains: list[_Chain] = []
    used: set[fx.Node] = set()
    for node in gm.graph.nodes:
        if node in used or not matches(node, 0):
            continue
        chain = [node]
        while len(chain) < len(types):
            users = list(chain[-1].users)
            if len(users) != 1:
                break  # a branch point (or the model output) ends the chain
            nxt = users[0]
            simple_call = len(nxt.args) == 1 and not nxt.kwargs and nxt.args[0] is chain[-1]
            if nxt in used or not simple_call or not matches(nxt, len(chain)):
                break
            chain.append(nxt)
        if len(chain) == len(types):
            used.update(chain)
            names = [str(n.target) for n in chain]
            chains.append(_Chain(names, [modules[n] for n in names], [_node_shape(n) for n in chain]))
    return chains


class _Call:
    def __init__(self, name: str, module: nn.Module, inputs: list[torch.Tensor], output: Any) -> None:
        self.name = name
        self.module = module
        self.inputs = inputs
        self.output = output
        self.output_copy: torch.Tensor | None = None


def _chains_by_hooks(root: nn.Module, types: Sequence[TypeSpec], example_input: ExampleInput) -> list[_Chain]:
    """Chains seen through module hooks: each module's output object is the next one's only input, is
    unchanged when it gets there (no in-place op in between), and goes to no other module."""
    calls: list[_Call] = []
    first_types = tuple(t for spec in types[:-1] for t in (spec if isinstance(spec, tuple) else (spec,)))

    def hook(module: nn.Module, args: tuple, output: Any, name: str) -> None:
        call = _Call(name, module, [a for a in args if isinstance(a, torch.Tensor)], output)
        if isinstance(output, torch.Tensor) and isinstance(module, first_types):
            call.output_copy = output.detach().clone()
        calls.append(call)

    handles = [
        m.register_forward_hook(lambda mod, a, o, n=name: hook(mod, a, o, n))
        for name, m in root.named_modules()
        if name and next(m.children(), None) is None
    ]
    try:
        with evaluation_mode(root):
            root(*_inputs(example_input))
    except Exception as e:
        raise GraphError(
            f"Running {type(root).__name__} on the example input failed: {type(e).__name__}: {e}. "
            "Pass an example input the model accepts."
        ) from e
    finally:
        for h in handles:
            h.remove()

    counts = Counter(c.name for c in calls)
    consumers: dict[int, list[int]] = {}
    producers: dict[int, int] = {}  # id of a live output tensor -> index of the latest call that returned it
    for i, call in enumerate(calls):
        for t in call.inputs:
            producer = producers.get(id(t))
            if producer is not None and calls[producer].output is t:
                consumers.setdefault(producer, []).append(i)
        if isinstance(call.output, torch.Tensor):
            producers[id(call.output)] = i

    def matches(i: int, position: int) -> bool:
        return counts[calls[i].name] == 1 and isinstance(calls[i].module, types[position])

    chains: list[_Chain] = []
    used: set[int] = set()
    for i in range(len(calls)):
        if i in used or not matches(i, 0):
            continue
        chain = [i]
        while len(chain) < len(types):
            prev = calls[chain[-1]]
            after = consumers.get(chain[-1], [])
            if len(after) != 1 or prev.output_copy is None:
                break
            nxt = after[0]
            c = calls[nxt]
            unchanged = len(c.inputs) == 1 and c.inputs[0] is prev.output and torch.equal(c.inputs[0], prev.output_copy)
            if nxt in used or not unchanged or not matches(nxt, len(chain)):
                break
            chain.append(nxt)
        if len(chain) == len(types):
            used.update(chain)
            chains.append(
                _Chain(
                    [calls[j].name for j in chain],
                    [calls[j].module for j in chain],
                    [
                        tuple(calls[j].output.shape) if isinstance(calls[j].output, torch.Tensor) else None
                        for j in chain
                    ],
                )
            )
    return chains


def _inputs(example_input: ExampleInput) -> tuple[Any, ...]:
    return (example_input,) if isinstance(example_input, torch.Tensor) else tuple(example_input)


def _default_example(model: nn.Module) -> torch.Tensor:
    from distiller.graph import example_input

    return example_input(model)


def _find_chains(
    root: nn.Module, types: Sequence[TypeSpec], example_input: ExampleInput | None
) -> tuple[list[_Chain], ExampleInput | None]:
    """Chains of ``root``, and (for the hooks fallback only) the example input used to find them."""
    if isinstance(root, fx.GraphModule):
        gm = root
    else:
        try:
            gm = trace_with_leaves(root)
        except GraphError as e:
            if example_input is None:
                try:
                    example_input = _default_example(root)
                except GraphError:
                    raise GraphError(
                        f"{e} Without a traceable graph, module sequences are found by running the model: pass "
                        "example_input."
                    ) from e
            log.warning(
                "%s does not trace with torch.fx; finding module sequences from module hooks, which cannot see "
                "functional operations between or after modules.",
                type(root).__name__,
            )
            return _chains_by_hooks(root, types, example_input), example_input
    if example_input is not None:
        annotate_shapes(gm, example_input)
    return _chains_in_graph(gm, types), None


# --- applying fusions -----------------------------------------------------------------------------------


def _set_module(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, list | tuple):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def _run(root: nn.Module, example_input: ExampleInput) -> list[torch.Tensor]:
    with evaluation_mode(root):
        return [t.detach().clone() for t in _flat_tensors(root(*_inputs(example_input)))]


def _same_outputs(reference: list[torch.Tensor], outputs: list[torch.Tensor]) -> bool:
    if len(reference) != len(outputs):
        return False
    for ref, out in zip(reference, outputs):
        if ref.shape != out.shape:
            return False
        if ref.is_floating_point():
            scale = max(1.0, ref.abs().max().item()) if ref.numel() else 1.0
            if not torch.allclose(ref, out, rtol=1e-3, atol=1e-4 * scale):
                return False
        elif not torch.equal(ref, out):
            return False
    return True


def _fuse(
    model: nn.Module,
    types_sequence: Sequence[TypeSpec],
    fuse_fn: _FuseFn,
    example_input: ExampleInput | None,
    *,
    verify: bool,
) -> list[list[str]]:
    types = [t if isinstance(t, type) else tuple(t) for t in types_sequence]
    if len(types) < 2:
        raise QuantizationError(f"A fusion sequence needs at least two module types, got {types_sequence!r}.")
    root = _unwrap(model)
    chains, hooks_input = _find_chains(root, types, example_input)
    reference = _run(root, hooks_input) if verify and hooks_input is not None else None
    fused: list[list[str]] = []
    for chain in chains:
        names = [normalize_module_name(n) for n in chain.names]
        backup = [copy.deepcopy(m) for m in chain.modules] if reference is not None else None
        result = fuse_fn(list(chain.modules), list(chain.shapes))
        if result is None:
            continue  # the fusion function rejected the sequence
        _set_module(root, chain.names[0], result)
        for name in chain.names[1:]:
            _set_module(root, name, nn.Identity())
        if reference is not None and not _same_outputs(reference, _run(root, hooks_input)):
            for name, module in zip(chain.names, backup):
                _set_module(root, name, module)
            log.warning(
                "Not fusing %s: it changes the output of %s (a functional operation the module hooks cannot see "
                "probably uses an intermediate result).",
                " -> ".join(names),
                type(root).__name__,
            )
            continue
        result.fused_modules = names[1:]  # the mark the original left: what was fused into this module
        log.debug("Fused %s", " -> ".join(names))
        fused.append(names)
    return fused


def fuse_modules(
    model: nn.Module,
    types_sequence: Sequence[TypeSpec],
    fuse_fn: Callable[[list[nn.Module]], nn.Module | None],
    example_input: ExampleInput | None = None,
) -> list[list[str]]:
    """Replace every chain of modules matching ``types_sequence`` by ``fuse_fn(chain)``.

    Args:
        model: a plain model or a GraphModule (e.g. from ``modularize``); changed in place.
        types_sequence: one type, or a tuple of types, per position: ``(nn.Conv2d, (nn.ReLU, nn.ReLU6))``.
        fuse_fn: gets the chain's modules, returns the module that replaces the first one, or ``None``
            to leave the chain alone. The other modules of the chain become ``nn.Identity``; the fused
            module gets the attribute ``fused_modules`` with their names.
        example_input: needed only for models that ``torch.fx`` cannot trace (then chains are found from
            module hooks, blind to functional operations); defaults to a random ``model.input_shape`` input.

    A chain never crosses a branch point: each module's output must feed only the next module (and that
    module only that output), and each module must be called once.

    Returns:
        The module names of every fused chain, in graph order.
    """
    return _fuse(model, types_sequence, lambda modules, _shapes: fuse_fn(modules), example_input, verify=False)


# --- batch-norm folding ----------------------------------------------------------------------------------


def _bn_stats(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, float]:
    return bn.running_mean, bn.running_var, bn.weight, bn.bias, float(bn.eps)


def _out_channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _why_not_foldable(layer: nn.Module, bn: nn.Module, layer_shape: tuple[int, ...] | None) -> str | None:
    if getattr(bn, "running_mean", None) is None or getattr(bn, "running_var", None) is None:
        return "the batch norm does not track running statistics"
    if bn.running_mean.numel() != _out_channels(layer):
        return f"the batch norm has {bn.running_mean.numel()} channels, the layer {_out_channels(layer)} outputs"
    if isinstance(layer, nn.Linear):
        if not isinstance(bn, nn.BatchNorm1d):
            return "only BatchNorm1d follows a Linear layer"
        if layer_shape is not None and len(layer_shape) != 2:
            return f"the Linear output has shape {layer_shape}: BatchNorm1d would normalize dim 1, not the features"
    return None


def _fold_into(layer: nn.Module, bn: nn.Module) -> None:
    """Fold ``bn``'s inference-time affine transform into ``layer``'s weight and bias (in place)."""
    mean, var, gamma, beta, eps = _bn_stats(bn)
    weight = layer.weight
    with torch.no_grad():
        scale = torch.rsqrt(var.double() + eps)
        if gamma is not None:
            scale = scale * gamma.double()
        shift = -mean.double() * scale
        if beta is not None:
            shift = shift + beta.double()
        bias = layer.bias.double() if layer.bias is not None else torch.zeros_like(shift)
        new_bias = (bias * scale + shift).to(dtype=weight.dtype, device=weight.device)
        shape = (-1,) + (1,) * (weight.dim() - 1)  # output channels are dim 0 of conv and linear weights
        weight.copy_((weight.double() * scale.view(shape).to(weight.device)).to(weight.dtype))
        if layer.bias is None:
            layer.bias = nn.Parameter(new_bias, requires_grad=weight.requires_grad)
        else:
            layer.bias.copy_(new_bias)


def fold_batch_norms(
    model: nn.Module, example_input: ExampleInput | None = None, *, inference: bool = True
) -> list[tuple[str, str]]:
    """Fold every batch norm that directly and only follows a conv/linear layer into that layer (in place).

    Folded pairs: ``Conv1d/2d/3d`` (any ``groups``) or ``Linear`` whose output goes only to a
    ``BatchNorm1d/2d/3d`` or ``FrozenBatchNorm2d`` with running statistics. Not folded: a layer whose
    output has other consumers, a batch norm without running statistics (``track_running_stats=False``),
    anything in between (a ReLU, a functional op), a batch norm before the layer, modules called more
    than once. The batch norm becomes ``nn.Identity``; the layer gets ``fused_modules = [bn name]``.

    Args:
        model: a plain model or a GraphModule from ``modularize``.
        example_input: gives shapes (a ``Linear`` folds only with a 2-D output) and is needed for models
            that ``torch.fx`` cannot trace; then every fold is checked against the model's output.
        inference: only ``True`` (fold with running statistics) is supported.

    Returns:
        ``(layer name, batch-norm name)`` of every folded pair, in graph order.

    Raises:
        QuantizationError: ``inference=False``.
        GraphError: the model does not trace and no example input is available.
    """
    if not inference:
        raise QuantizationError(
            "fold_batch_norms(inference=False) is not supported yet: folding for quantization-aware training "
            "(simulated folding that keeps using batch statistics while training) comes later. Use "
            "inference=True, which folds the running statistics for evaluation and post-training quantization."
        )

    def fold(modules: list[nn.Module], shapes: list[tuple[int, ...] | None]) -> nn.Module | None:
        layer, bn = modules
        reason = _why_not_foldable(layer, bn, shapes[0])
        if reason is not None:
            log.debug("Not folding %s into %s: %s", type(bn).__name__, type(layer).__name__, reason)
            return None
        _fold_into(layer, bn)
        return layer

    fused = _fuse(model, (FOLDABLE_LAYERS, BATCH_NORMS), fold, example_input, verify=True)
    return [(layer, bn) for layer, bn in fused]


def move_folded_stats(stats: Mapping[str, Any], folded_pairs: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Calibration statistics after folding: each layer takes its folded batch norm's output statistics.

    ``stats`` is ``{module name: {'inputs': ..., 'output': ...}}``. For each ``(layer, bn)`` pair the
    batch norm's entry is removed and its ``'output'`` becomes the layer's ``'output'`` (the layer now
    computes what the batch norm did). Pairs whose batch norm has no entry (statistics collected after
    folding) are skipped. ``stats`` is not changed; names may carry ``module.`` elements.

    Raises:
        QuantizationError: a batch norm's entry has no ``'output'`` statistics.
    """
    result = copy.deepcopy(dict(stats))
    keys = {normalize_module_name(k): k for k in result}
    for layer, bn in folded_pairs:
        bn_key = keys.get(normalize_module_name(bn))
        if bn_key is None:
            continue
        bn_stats = result.pop(bn_key)
        if not isinstance(bn_stats, Mapping) or "output" not in bn_stats:
            raise QuantizationError(
                f"The statistics of folded batch norm {bn!r} have no 'output' entry; collect statistics again "
                "(e.g. with the calibration stats collector) before quantizing."
            )
        layer_key = keys.get(normalize_module_name(layer), normalize_module_name(layer))
        entry = result.setdefault(layer_key, {})
        entry["output"] = bn_stats["output"]
        keys[normalize_module_name(layer)] = layer_key
    return result
