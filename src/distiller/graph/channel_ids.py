"""Channel-slot propagation: which output channel of which layer every tensor element comes from.

Each layer that creates channels (a convolution's filters, a Linear layer's outputs) gets one fresh
*slot* id per channel. The traced graph is then run on integer tensors instead of activations: every
value holds, per element, the slot of the channel it carries (-1: none, e.g. the image). Layout
operations (``view``, ``flatten``, ``permute``, ``cat``, ``split``, channel shuffles, indexing) run
unchanged on these id tensors, so a Linear layer after ``flatten`` learns which of its inputs come
from which conv channel for any feature-map shape. Element-wise operations between two values
(residual ``+``, squeeze-and-excitation ``*``) *couple* the slots they meet: those channels must be
removed together. Operations we cannot see through *block* the slots they touch.

The result is plain data: slot-union pairs, blocked slots, and per-parameter slot vectors
(:class:`SlotMember`), from which :mod:`distiller.graph.coupling` forms the channel groups.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

NO_SLOT = -1
ZERO = -2
"""Marks constant zeros from padding: a channel added to them cannot go (the padding's size is fixed),
but padding does not hide the channels next to it."""

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PER_CHANNEL_NORMS = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
"""Normalization layers with one set of statistics and affine parameters per channel."""
_LAYOUT = {
    "view",
    "reshape",
    "flatten",
    "permute",
    "transpose",
    "contiguous",
    "squeeze",
    "unsqueeze",
    "cat",
    "concat",
    "stack",
    "split",
    "chunk",
    "getitem",
    "expand",
    "expand_as",
    "t",
    "narrow",
    "unbind",
    "repeat",
    "roll",
    "flip",
    "unflatten",
    "movedim",
    "swapaxes",
    "clone",
    "detach",
    "to",
    "type_as",
    "float",
    "half",
    "channel_shuffle",
    "native_channel_shuffle",
    "view_as",
    "reshape_as",
    "tensor_split",
}
_ELEMENTWISE_BINARY = {
    "add",
    "add_",
    "iadd",
    "sub",
    "sub_",
    "mul",
    "mul_",
    "imul",
    "div",
    "div_",
    "truediv",
    "maximum",
    "minimum",
    "rsub",
}
_ELEMENTWISE_UNARY = {
    "relu",
    "relu_",
    "relu6",
    "gelu",
    "silu",
    "silu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "mish",
    "softplus",
    "dropout",
    "dropout2d",
    "alpha_dropout",
    "feature_alpha_dropout",
    "clamp",
    "clamp_",
    "clip",
    "abs",
    "neg",
    "exp",
    "sqrt",
    "pow",
    "square",
    "erf",
    "stochastic_depth",
    "identity",
    "log",
    "floor",
    "ceil",
    "round",
}
_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.Mish,
    nn.Softplus,
    nn.PReLU,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Identity,
)
_SPATIAL_MODULES = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.ZeroPad2d,
    nn.ConstantPad2d,
    nn.ReflectionPad2d,
    nn.ReplicationPad2d,
    nn.LPPool2d,
)
_SPATIAL_FUNCTIONS = {
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool3d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool3d",
    "interpolate",
    "upsample",
    "pad",
    "max_pool2d_with_indices",
}
_REDUCTIONS = {"mean", "sum", "amax", "amin", "std", "var"}


@dataclass(frozen=True)
class SlotMember:
    """Dimension ``dim`` of tensor ``tensor`` (a parameter or buffer), whose index ``i`` carries slot ``slots[i]``.

    ``role`` tells how the tensor uses the channels: ``producer`` rows create them (filters),
    ``consumer`` columns read them (a convolution's input channels), ``passive`` entries scale or
    shift them one by one (BatchNorm, depthwise filters, biases).
    """

    tensor: str
    dim: int
    slots: tuple[int, ...]
    role: str
    layer: str


@dataclass
class SlotAnalysis:
    """What the propagation found; slot ids run from 0 to ``num_slots - 1``."""

    num_slots: int = 0
    members: list[SlotMember] = field(default_factory=list)
    unions: list[torch.Tensor] = field(default_factory=list)  # (2, n) pairs of slots that are one channel
    blocked: dict[int, str] = field(default_factory=dict)  # slot -> why it cannot be removed
    producers: dict[int, str] = field(default_factory=dict)  # first slot of a layer's channels -> layer
    consumer_inputs: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # layer -> [(fx input, dim)]

    def new_slots(self, count: int, layer: str) -> torch.Tensor:
        start = self.num_slots
        self.num_slots += count
        self.producers[start] = layer
        return torch.arange(start, start + count)

    def block(self, ids: Any, reason: str) -> None:
        for t in _tensors_in(ids):
            for s in torch.unique(t).tolist():
                if s >= 0:
                    self.blocked.setdefault(int(s), reason)

    def union(self, a: torch.Tensor, b: torch.Tensor, reason: str) -> None:
        a, b = torch.broadcast_tensors(a, b)
        a, b = a.reshape(-1), b.reshape(-1)
        both = (a >= 0) & (b >= 0)
        if both.any():
            pairs = torch.unique(torch.stack([a[both], b[both]]), dim=1)
            self.unions.append(pairs)
        one = (a >= 0) ^ (b >= 0)
        if one.any():  # a channel combined with something that is no channel (an input, a constant, padding)
            self.block(torch.where(a >= 0, a, b)[one], reason)


def _tensors_in(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list | tuple):
        return [t for v in value for t in _tensors_in(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v)]
    return []


def channel_vector(ids: torch.Tensor, dim: int) -> torch.Tensor | None:
    """The slots along ``dim`` if ``ids`` is constant along every other dimension (zero padding
    aside), else None."""
    dim = dim % ids.dim()
    others = [d for d in range(ids.dim()) if d != dim]
    vector = ids.amax(dim=others) if others else ids
    shape = [1] * ids.dim()
    shape[dim] = -1
    return vector if bool(((ids == vector.reshape(shape)) | (ids == ZERO)).all()) else None


def _along(vector: torch.Tensor, dim: int, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    view = [1] * len(shape)
    view[dim % len(shape)] = -1
    return vector.reshape(view).expand(tuple(shape))


def _meta_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _op_name(node: fx.Node) -> str:
    if node.op == "call_function":
        special = {
            operator.add: "add",
            operator.iadd: "iadd",
            operator.mul: "mul",
            operator.imul: "imul",
            operator.sub: "sub",
            operator.truediv: "truediv",
            operator.getitem: "getitem",
            operator.matmul: "matmul",
            operator.neg: "neg",
        }
        return special.get(node.target, getattr(node.target, "__name__", str(node.target)))
    return str(node.target)


class SlotPropagator(fx.Interpreter):
    """Runs a traced graph (annotated by ShapeProp) on slot-id tensors, recording a :class:`SlotAnalysis`."""

    def __init__(self, gm: fx.GraphModule, names: dict[fx.Node, str], canonical: dict[str, str]) -> None:
        super().__init__(gm, garbage_collect_values=True)
        self.names = names  # fx node -> graph node name
        self.canonical = canonical  # raw module path -> canonical name
        self.analysis = SlotAnalysis()
        self._node: fx.Node | None = None
        self._seen: dict[tuple[str, int], torch.Tensor] = {}

    def run_node(self, n: fx.Node) -> Any:
        self._node = n
        return super().run_node(n)

    # --- helpers ----------------------------------------------------------------------------------------

    def _none(self) -> torch.Tensor | None:
        shape = _meta_shape(self._node)
        return None if shape is None else torch.full(shape, NO_SLOT, dtype=torch.long)

    def _opaque(self, args: Any, kwargs: Any, reason: str) -> Any:
        self.analysis.block((args, kwargs), reason)
        return self._none()

    def _spatial(self, ids: torch.Tensor, reason: str) -> torch.Tensor | None:
        """An op that keeps channels (dim 1) and mixes only other dims (pooling, resizing, padding)."""
        out_shape = _meta_shape(self._node)
        vector = channel_vector(ids, 1) if ids.dim() >= 2 else None
        if vector is None or out_shape is None or len(out_shape) < 2 or out_shape[1] != ids.shape[1]:
            return self._opaque(ids, None, reason)
        return _along(vector, 1, out_shape)

    def _reduce(self, name: str, args: tuple, kwargs: dict) -> torch.Tensor | None:
        ids = args[0]
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if dims is None:
            return self._opaque(args, kwargs, f"{name} over all dimensions")
        dims = sorted({d % ids.dim() for d in ([dims] if isinstance(dims, int) else dims)})
        if 1 in dims:
            return self._opaque(args, kwargs, f"{name} over the channel dimension")
        vector = channel_vector(ids, 1)
        if vector is None:
            return self._opaque(args, kwargs, f"{name} of mixed channels")
        out_shape = _meta_shape(self._node)
        return _along(vector, 1, out_shape) if out_shape else None

    def _elementwise(self, name: str, args: tuple, kwargs: dict) -> Any:
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) >= 2:
            self.analysis.union(tensors[0], tensors[1], f"{name} with a non-channel tensor")
            return torch.maximum(tensors[0], tensors[1])
        if len(tensors) == 1:
            out_shape = _meta_shape(self._node)
            t = tensors[0]
            if out_shape is not None and tuple(t.shape) != out_shape:
                return torch.broadcast_to(t, out_shape).clone()
            return t
        return self._none()

    def _dispatch(self, name: str, target: Any, args: tuple, kwargs: dict, call) -> Any:
        if not _tensors_in((args, kwargs)):  # arithmetic on sizes and other plain values
            try:
                result = call()
            except Exception:
                return self._none()
            return self._none() if isinstance(result, torch.Tensor) else result
        if name in _LAYOUT:
            if name == "to" or name == "type_as":
                return args[0]
            try:
                result = call()
            except Exception:
                return self._opaque(args, kwargs, f"{name} could not be followed")
            if name in ("chunk", "split", "tensor_split", "unbind") and isinstance(result, tuple | list):
                self._equal_pieces(name, result)
            elif name in ("view", "reshape") and isinstance(args[0], torch.Tensor):
                self._split_channels(name, args[0], result)
            return result
        if name in _ELEMENTWISE_BINARY:
            return self._elementwise(name, args, kwargs)
        if name in _ELEMENTWISE_UNARY:
            return self._elementwise(name, args[:1], {})
        if name == "pad" and isinstance(args[0], torch.Tensor):
            return self._pad(args, kwargs)
        if name in _SPATIAL_FUNCTIONS and isinstance(args[0], torch.Tensor):
            result = self._spatial(args[0], f"{name} of mixed channels")
            return (result, self._none()) if name.endswith("with_indices") else result
        if name in _REDUCTIONS:
            return self._reduce(name, args, kwargs)
        if name in ("size", "dim", "numel", "shape", "__len__", "len", "getattr"):
            return call()
        return self._opaque(args, kwargs, f"operation {name!r} mixes or hides channels")

    def _equal_pieces(self, name: str, pieces: tuple | list) -> None:
        """Pieces of a fixed count (``chunk(2)``) must stay equal: position ``i`` of every piece goes
        together. Pieces of different sizes pin their channels."""
        tensors = [p for p in pieces if isinstance(p, torch.Tensor)]
        if len(tensors) < 2:
            return
        if any(t.shape != tensors[0].shape for t in tensors):
            self.analysis.block(tensors, f"{name} into pieces of different sizes")
            return
        for other in tensors[1:]:
            self.analysis.union(tensors[0], other, f"{name} pieces")

    def _split_channels(self, name: str, ids: torch.Tensor, out: torch.Tensor) -> None:
        """A view that splits the channel dim into ``(groups, C / groups)`` (channel shuffle) fixes the
        number of groups: position ``i`` of every group goes together."""
        if ids.dim() < 2 or out.dim() <= ids.dim() or out.shape[0] != ids.shape[0]:
            return
        channels, size, split = ids.shape[1], 1, 1
        while split < out.dim() and size < channels:
            size *= out.shape[split]
            split += 1
        if size != channels or split - 1 < 2 or tuple(out.shape[split:]) != tuple(ids.shape[2:]):
            return
        vector = channel_vector(ids, 1)
        if vector is None:
            self.analysis.block(ids, f"{name} splits mixed channels")
            return
        groups = vector.reshape(-1, out.shape[split - 1])
        for g in range(1, groups.shape[0]):
            self.analysis.union(groups[0], groups[g], f"{name} into channel groups")

    def _pad(self, args: tuple, kwargs: dict) -> torch.Tensor | None:
        ids, pad = args[0], kwargs.get("pad", args[1] if len(args) > 1 else None)
        mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
        value = kwargs.get("value", args[3] if len(args) > 3 else None)
        if mode != "constant" or value not in (None, 0, 0.0):
            return self._spatial(ids, "padding that copies values")
        return torch.nn.functional.pad(ids, pad, value=ZERO)

    # --- fx.Interpreter overrides ------------------------------------------------------------------

    def placeholder(self, target, args, kwargs):
        return self._none()

    def get_attr(self, target, args, kwargs):
        shape = _meta_shape(self._node)
        return None if shape is None else torch.full(shape, NO_SLOT, dtype=torch.long)

    def call_function(self, target, args, kwargs):
        name = _op_name(self._node)
        return self._dispatch(name, target, args, kwargs, lambda: target(*args, **kwargs))

    def call_method(self, target, args, kwargs):
        name = str(target)
        return self._dispatch(name, target, args, kwargs, lambda: getattr(args[0], target)(*args[1:], **kwargs))

    def output(self, target, args, kwargs):
        self.analysis.block(args, "reaches the model output")
        return args[0]

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        layer = self.canonical[target]
        ids = args[0] if args else None
        if not isinstance(ids, torch.Tensor):
            return self._opaque(args, kwargs, f"{layer} takes no tensor")
        if isinstance(module, _CONV) and not getattr(module, "transposed", False):
            return self._conv(module, layer, ids, args, kwargs)
        if isinstance(module, nn.Linear):
            return self._linear(module, layer, ids, args, kwargs)
        if isinstance(module, PER_CHANNEL_NORMS):
            vector = channel_vector(ids, 1)
            if vector is None:
                return self._opaque(args, kwargs, f"{layer} normalizes mixed channels")
            self._members(
                module, layer, vector, "passive", dim=0, names=("weight", "bias", "running_mean", "running_var")
            )
            return ids
        if isinstance(module, _ELEMENTWISE_MODULES):
            if isinstance(module, nn.PReLU) and module.num_parameters > 1:
                vector = channel_vector(ids, 1)
                if vector is None:
                    return self._opaque(args, kwargs, f"{layer} has per-channel slopes over mixed channels")
                self._members(module, layer, vector, "passive", dim=0, names=("weight",))
            return ids
        if isinstance(module, nn.ConstantPad1d | nn.ConstantPad2d | nn.ConstantPad3d | nn.ZeroPad2d):
            return self._pad((ids, list(module.padding), "constant", module.value), {})
        if isinstance(module, _SPATIAL_MODULES):
            return self._spatial(ids, f"{layer} pools mixed channels")
        if isinstance(module, nn.Flatten | nn.Unflatten | nn.ChannelShuffle):
            return module(ids)
        if isinstance(module, nn.Softmax | nn.LogSoftmax) and module.dim not in (1, -ids.dim() + 1):
            return ids
        kind = type(module).__name__
        return self._opaque(args, kwargs, f"{layer} ({kind}) is not transparent to channel removal")

    # --- layers ---------------------------------------------------------------------------------------

    def _members(
        self, module: nn.Module, layer: str, vector: torch.Tensor, role: str, dim: int, names: tuple[str, ...]
    ) -> None:
        for attr in names:
            t = getattr(module, attr, None)
            if isinstance(t, torch.Tensor) and t.dim() > dim and t.shape[dim] == vector.numel():
                full = f"{layer}.{attr}" if layer else attr
                seen = self._seen.get((full, dim))
                if seen is not None:  # a module called again: its tensors carry the same channels
                    self.analysis.union(seen, vector, f"{layer} is called on inputs that cannot be coupled")
                    continue
                self._seen[(full, dim)] = vector
                self.analysis.members.append(SlotMember(full, dim, tuple(vector.tolist()), role, layer))

    def _conv(self, module: nn.Conv2d, layer: str, ids: torch.Tensor, args, kwargs) -> torch.Tensor:
        out_shape = _meta_shape(self._node)
        groups, c_in, c_out = module.groups, module.in_channels, module.out_channels
        vector = channel_vector(ids, 1)
        if vector is None:
            self.analysis.block(ids, f"{layer} reads mixed channels")
            vector = torch.full((c_in,), NO_SLOT, dtype=torch.long)
        if groups == 1:
            self._members(module, layer, vector, "consumer", dim=1, names=("weight",))
            out = self.analysis.new_slots(c_out, layer)
            self._members(module, layer, out, "producer", dim=0, names=("weight", "bias"))
        elif groups == c_in:  # depthwise: output channel o filters input channel o // multiplier
            out = vector.repeat_interleave(c_out // c_in)
            self._members(module, layer, out, "passive", dim=0, names=("weight", "bias"))
        else:
            # Grouped: keep the groups equal by removing the same position from every group.
            in_per, out_per = c_in // groups, c_out // groups
            by_group = vector.reshape(groups, in_per)
            for g in range(1, groups):
                self.analysis.union(by_group[0], by_group[g], f"{layer} groups")
            self._members(module, layer, by_group[0], "consumer", dim=1, names=("weight",))
            base = self.analysis.new_slots(out_per, layer)
            out = base.repeat(groups)
            self._members(module, layer, out, "producer", dim=0, names=("weight", "bias"))
        return _along(out, 1, out_shape)

    def _linear(self, module: nn.Linear, layer: str, ids: torch.Tensor, args, kwargs) -> torch.Tensor:
        out_shape = _meta_shape(self._node)
        vector = channel_vector(ids, -1)
        if vector is None:
            self.analysis.block(ids, f"{layer} reads mixed features")
            vector = torch.full((module.in_features,), NO_SLOT, dtype=torch.long)
        self._members(module, layer, vector, "consumer", dim=1, names=("weight",))
        out = self.analysis.new_slots(module.out_features, layer)
        self._members(module, layer, out, "producer", dim=0, names=("weight", "bias"))
        return _along(out, -1, out_shape)


def propagate_slots(
    gm: fx.GraphModule, names: dict[fx.Node, str], canonical: dict[str, str], example_input: torch.Tensor
) -> SlotAnalysis:
    """Run the slot propagation over ``gm`` (which ShapeProp annotated for ``example_input``)."""
    propagator = SlotPropagator(gm, names, canonical)
    with torch.no_grad():
        propagator.run(torch.full(tuple(example_input.shape), NO_SLOT, dtype=torch.long))
    return propagator.analysis
