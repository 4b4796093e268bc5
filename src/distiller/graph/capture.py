"""Capturing a model's dataflow with public PyTorch APIs.

``torch.fx.symbolic_trace`` is the primary method: it records functional operations (``x + y``,
``torch.cat``, ``flatten``, ``view``) as nodes, keeps ``nn.Module`` calls as named nodes, and tells
for every operation which module's ``forward`` it ran in. It covers every classification model of
torchvision 0.29 (measured by ``benchmarks/thinning_coverage.py``); ``torch.export`` covers the same
set but rewrites modules into ATen ops, losing the module structure that thinning works on.

Models whose ``forward`` branches on tensor values do not trace. For them :func:`capture_by_hooks`
records only the calls of leaf modules and links them through the tensors they pass: enough for
shapes, MACs and layer order, not for channel coupling (functional ops are invisible).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from distiller.errors import GraphError


@contextlib.contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Run ``model`` in eval mode without gradients, restoring every submodule's mode afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def trace_fx(model: nn.Module, example_input: torch.Tensor) -> fx.GraphModule:
    """Symbolically trace ``model`` and annotate every node with its output shape (``meta['tensor_meta']``).

    Raises:
        GraphError: the model does not trace (data-dependent control flow, unsupported Python).
    """
    with evaluation_mode(model):  # trace in eval mode: `if self.training` branches (stochastic depth) vanish
        try:
            traced = fx.symbolic_trace(model)
        except Exception as e:  # fx raises many types (TraceError, TypeError, NotImplementedError, ...)
            raise GraphError(f"torch.fx cannot trace {type(model).__name__}: {type(e).__name__}: {e}") from e
        try:
            ShapeProp(traced).propagate(example_input)
        except Exception as e:
            raise GraphError(
                f"Running {type(model).__name__} on an example input of shape {tuple(example_input.shape)} "
                f"failed: {type(e).__name__}: {e}. Pass an example input the model accepts."
            ) from e
    return traced


class HookCall:
    """One call of a leaf module, recorded by :func:`capture_by_hooks`."""

    def __init__(self, module_name: str, module: nn.Module, inputs: list[int], input_shapes, output_shape) -> None:
        self.module_name = module_name
        self.module = module
        self.inputs = inputs  # indices of earlier calls that produced the inputs (-1: the model input)
        self.input_shapes = input_shapes
        self.output_shape = output_shape


def capture_by_hooks(model: nn.Module, example_input: torch.Tensor) -> list[HookCall]:
    """Record the calls of leaf modules in execution order, linked through the tensors they exchange."""
    calls: list[HookCall] = []
    producer: dict[int, int] = {id(example_input): -1}
    keep_alive: list[torch.Tensor] = []  # ids stay unique while the tensors live

    def hook(module, args, output, name):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        inputs = [producer[id(t)] for t in tensors if id(t) in producer]
        out_shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
        calls.append(HookCall(name, module, inputs, [tuple(t.shape) for t in tensors], out_shape))
        if isinstance(output, torch.Tensor):
            producer[id(output)] = len(calls) - 1
            keep_alive.append(output)

    handles = [
        m.register_forward_hook(lambda mod, a, o, n=name: hook(mod, a, o, n))
        for name, m in model.named_modules()
        if name and not list(m.children())
    ]
    try:
        with evaluation_mode(model):
            model(example_input)
    except Exception as e:
        raise GraphError(
            f"Running {type(model).__name__} on an example input of shape {tuple(example_input.shape)} failed: "
            f"{type(e).__name__}: {e}"
        ) from e
    finally:
        for h in handles:
            h.remove()
    return calls
