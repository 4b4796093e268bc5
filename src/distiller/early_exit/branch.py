"""Exit branches attached to any model by module name, through forward hooks.

An *exit* is a small classifier (the *branch*) fed by the output of one module of the backbone (the
*exit point*). The original Distiller replaced the exit-point module by a ``BranchPoint`` wrapper,
which renamed everything inside it (``layer1.0.conv1.weight`` became
``layer1.branched_module.0.conv1.weight``) and so broke schedules, pretrained weights and
checkpoints of the backbone. Here the backbone is left untouched:

* the branches live in one ``nn.ModuleList`` registered on the model as ``early_exits`` (so they
  move with ``.to()``, train with ``.parameters()`` and are saved in the state dict as
  ``early_exits.<i>.*``);
* a :class:`BranchPoint` forward hook on each exit-point module runs its branch on that module's
  output and records the exit's logits;
* two hooks on the model itself clear the records before a forward pass and, after it, turn the
  model's output into ``[exit_0, ..., exit_{E-1}, final]``, the original's output convention.

The hooks are callable objects, not closures, so ``copy.deepcopy(model)`` gives a copy whose hooks
run the copy's branches (deepcopy maps every reference through one memo). ``torch.fx`` does not run
module hooks, so a traced graph of a model with exits (``--summary compute``, thinning) sees the
backbone only: thin or quantize the backbone, then attach the exits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = [
    "EXITS_ATTRIBUTE",
    "BranchPoint",
    "ExitState",
    "ExitsDef",
    "attach_exits",
    "detach_exits",
    "exit_names",
    "exit_state",
    "has_exits",
    "num_exits",
    "observe_exits",
]

EXITS_ATTRIBUTE = "early_exits"
"""The model attribute (an ``nn.ModuleList``) that holds the branches, in exit order."""

_STATE_ATTRIBUTE = "_early_exit_state"

ExitsDef = Sequence[tuple[str, nn.Module]] | Mapping[str, nn.Module]
"""Exit points and their branches, earliest exit first: ``[("layer1", branch0), ("layer2", branch1)]``."""

ExitObserver = Callable[[int, torch.Tensor], None]
"""Called with (exit index, exit logits) right after a branch ran; may raise to stop the forward pass."""


@dataclass
class ExitState:
    """What the hooks of one model share: the exits, and the logits recorded in the current forward pass.

    Attributes:
        names: exit-point module names, in exit order.
        outputs: logits of the exits that ran in the current forward pass, by exit index.
        order: exit indices in the order they ran in the current forward pass.
        observer: an optional callback after each branch (MAC counting, early stopping at inference).
        active: True while the model's forward runs; a submodule called on its own (``model.layer1(x)``)
            runs no branch.
    """

    names: list[str]
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    observer: ExitObserver | None = None
    active: bool = False

    def clear(self, active: bool = False) -> None:
        """Forget the recorded exits (and so their activations); ``active`` marks a pass in progress."""
        self.outputs = {}
        self.order = []
        self.active = active

    def record(self, index: int, logits: torch.Tensor) -> None:
        if index in self.outputs:
            raise ConfigError(
                f"Exit point {self.names[index]!r} ran twice in one forward pass (the module is reused, e.g. a "
                "ReLU shared by several layers). Attach the exit to a module that runs once, such as the block "
                "that contains it."
            )
        self.outputs[index] = logits
        self.order.append(index)

    def collected(self) -> list[torch.Tensor]:
        """The exits' logits in exit order; every exit must have run, in that order."""
        missing = [self.names[i] for i in range(len(self.names)) if i not in self.outputs]
        if missing:
            raise ConfigError(
                f"Exit point(s) {missing} did not run in this forward pass, so their exits have no output. "
                "Attach exits to modules that the forward pass always calls."
            )
        if self.order != sorted(self.order):
            ran = [self.names[i] for i in self.order]
            raise ConfigError(
                f"Exits are defined in the order {self.names} but the forward pass reaches them in the order "
                f"{ran}. List the exits earliest first: exit 0 must be the first one the input reaches."
            )
        return [self.outputs[i] for i in range(len(self.names))]


class BranchPoint:
    """Forward hook of an exit-point module: runs the exit's branch on the module's output.

    The module's own output passes on unchanged, so the backbone computes exactly what it computed
    without exits.
    """

    def __init__(self, index: int, branch: nn.Module, state: ExitState) -> None:
        self.index = index
        self.branch = branch
        self.state = state

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if not self.state.active:
            return
        logits = self.branch(output)
        self.state.record(self.index, logits)
        if self.state.observer is not None:
            self.state.observer(self.index, logits)


class _ClearOutputs:
    """Forward pre-hook of the model: a new pass starts with no recorded exits."""

    def __init__(self, state: ExitState) -> None:
        self.state = state

    def __call__(self, model: nn.Module, args: tuple) -> None:
        self.state.clear(active=True)


class _CollectOutputs:
    """Forward hook of the model: its output becomes ``[exit_0, ..., final]``."""

    def __init__(self, state: ExitState) -> None:
        self.state = state

    def __call__(self, model: nn.Module, args: tuple, output: torch.Tensor) -> list[torch.Tensor]:
        exits = self.state.collected()
        self.state.clear()  # do not keep activations (and their graphs) alive between passes
        return [*exits, output]


_HOOK_TYPES = (BranchPoint, _ClearOutputs, _CollectOutputs)


def exit_state(model: nn.Module) -> ExitState | None:
    """The exits' shared state, or None for a model without exits."""
    return getattr(model, _STATE_ATTRIBUTE, None)


def has_exits(model: nn.Module) -> bool:
    """True when :func:`attach_exits` gave ``model`` exits (its forward returns a list)."""
    return exit_state(model) is not None


def num_exits(model: nn.Module) -> int:
    """Number of early exits (the final classifier not counted); 0 for a model without exits."""
    state = exit_state(model)
    return len(state.names) if state is not None else 0


def exit_names(model: nn.Module) -> list[str]:
    """Exit-point module names, earliest exit first."""
    state = exit_state(model)
    return list(state.names) if state is not None else []


def _exit_items(exits_def: ExitsDef) -> list[tuple[str, nn.Module]]:
    items = list(exits_def.items()) if isinstance(exits_def, Mapping) else list(exits_def)
    if not items:
        raise ConfigError("exits_def is empty: give at least one (module name, branch module) pair.")
    for item in items:
        if not (isinstance(item, tuple | list) and len(item) == 2):
            raise ConfigError(f"exits_def entries are (module name, branch module) pairs, got {item!r}.")
        name, branch = item
        if not isinstance(name, str) or not isinstance(branch, nn.Module):
            raise ConfigError(
                f"exits_def entry ({name!r}, {type(branch).__name__}) must be (module name: str, branch: nn.Module)."
            )
    return [(normalize_module_name(name), branch) for name, branch in items]


def _check_model(model: nn.Module) -> None:
    if has_exits(model):
        raise ConfigError(
            f"The model already has exits at {exit_names(model)}; call detach_exits(model) before attaching new ones."
        )
    if isinstance(model, nn.Sequential | nn.ModuleList | nn.ModuleDict):
        raise ConfigError(
            f"Cannot attach exits to a bare {type(model).__name__}: its forward would run the branches as layers. "
            "Wrap it in an nn.Module whose forward calls it."
        )
    if hasattr(model, EXITS_ATTRIBUTE):
        raise ConfigError(f"The model already has an attribute {EXITS_ATTRIBUTE!r}; exits need that name.")


def attach_exits(model: nn.Module, exits_def: ExitsDef) -> list[BranchPoint]:
    """Give ``model`` early exits; afterwards its forward returns ``[exit_0, ..., exit_{E-1}, final]``.

    Args:
        model: any module (not a bare ``nn.Sequential``); its parameters and module names do not change.
        exits_def: ``(exit-point module name, branch)`` pairs, earliest exit first. A branch takes the
            exit point's output and returns logits shaped like the model's (e.g. pooling, flatten, Linear).
            ``module.`` prefixes in names (DataParallel) are ignored.

    Returns:
        The branch points (forward hooks), in exit order.

    Raises:
        ConfigError: unknown or repeated module name, the model itself as exit point, a model that
            already has exits.
    """
    items = _exit_items(exits_def)
    _check_model(model)
    modules = dict(model.named_modules())
    names = [name for name, _ in items]
    for name in names:
        if name == "":
            raise ConfigError("An exit point cannot be the model itself (name ''); name one of its submodules.")
        if name not in modules:
            candidates = [n for n in modules if n]
            raise ConfigError(f"exits_def: the model has no module {name!r}.{did_you_mean(name, candidates)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"exits_def names {repeated} more than once; each module can carry one exit.")
    device_param = next(model.parameters(), None)
    branches = nn.ModuleList(branch for _, branch in items)
    if device_param is not None:
        branches.to(device_param.device)
    branches.train(model.training)
    state = ExitState(names)
    model.add_module(EXITS_ATTRIBUTE, branches)
    object.__setattr__(model, _STATE_ATTRIBUTE, state)
    points = []
    for index, (name, branch) in enumerate(items):
        point = BranchPoint(index, branch, state)
        modules[name].register_forward_hook(point)
        points.append(point)
    model.register_forward_pre_hook(_ClearOutputs(state))
    model.register_forward_hook(_CollectOutputs(state))
    return points


def detach_exits(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Remove ``model``'s exits; its forward returns the final output alone again.

    Returns:
        The removed ``(module name, branch)`` pairs, which :func:`attach_exits` can attach again.
    """
    state = exit_state(model)
    if state is None:
        return []
    for module in model.modules():
        for hooks in (module._forward_hooks, module._forward_pre_hooks):
            for key in [k for k, hook in hooks.items() if isinstance(hook, _HOOK_TYPES)]:
                del hooks[key]
    branches = getattr(model, EXITS_ATTRIBUTE)
    delattr(model, EXITS_ATTRIBUTE)
    object.__delattr__(model, _STATE_ATTRIBUTE)
    return list(zip(state.names, branches))


@contextlib.contextmanager
def observe_exits(model: nn.Module, observer: ExitObserver) -> Iterator[None]:
    """Call ``observer(index, logits)`` after every branch that runs inside the ``with`` block.

    The observer may raise to abandon the forward pass at that exit (see
    :class:`~distiller.early_exit.inference.EarlyExitInference`).
    """
    state = exit_state(model)
    if state is None:
        raise ConfigError("The model has no early exits; attach them first with attach_exits(model, exits_def).")
    previous, state.observer = state.observer, observer
    try:
        yield
    finally:
        state.observer = previous
