"""``EarlyExitMgr``: the original Distiller's early-exit API, over :mod:`~distiller.early_exit.branch`.

Kept so that code written for the original (``ee_mgr.attach_exits(model, exits_def)``,
``ee_mgr.get_exits_outputs(model)``) keeps working. The original needed each model's ``forward`` to
gather the exits' outputs by hand; here :func:`attach_exits` makes any model return
``[exit_0, ..., final]`` itself, so new code can call the functions directly.
"""

from __future__ import annotations

import torch
from torch import nn

from distiller.early_exit.branch import (
    BranchPoint,
    ExitsDef,
    attach_exits,
    detach_exits,
    exit_state,
    num_exits,
)

__all__ = ["EarlyExitMgr"]


class EarlyExitMgr:
    """Attach, inspect and remove a model's early exits (stateless: the state lives on the model)."""

    def attach_exits(self, model: nn.Module, exits_def: ExitsDef) -> list[BranchPoint]:
        """See :func:`distiller.early_exit.attach_exits`."""
        return attach_exits(model, exits_def)

    def detach_exits(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """See :func:`distiller.early_exit.detach_exits`."""
        return detach_exits(model)

    def num_exits(self, model: nn.Module) -> int:
        """Number of early exits (the final classifier not counted)."""
        return num_exits(model)

    def get_exits_outputs(self, model: nn.Module) -> list[torch.Tensor]:
        """Logits of the exits recorded so far in a forward pass that is still running (exit order).

        After a forward pass has returned, the exits' outputs are in its returned list instead.
        """
        state = exit_state(model)
        if state is None:
            return []
        return [state.outputs[i] for i in sorted(state.outputs)]

    def delete_exits_outputs(self, model: nn.Module) -> None:
        """Forget the recorded exit outputs (the model also does this at the start of every forward)."""
        state = exit_state(model)
        if state is not None:
            state.clear()
