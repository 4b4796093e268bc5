"""A lottery ticket: the initial weights of a network under the masks its trained version earned.

Frankle & Carbin's hypothesis is that a trained, pruned network's *mask* together with the
*initialization* it started from is a sub-network that trains, in isolation, to the dense network's
accuracy. The ticket is therefore not the trained sparse weights but the initial ones, with the
trained model's pruning pattern. "Late rewinding" (Frankle et al., 2019) uses the weights after a
few epochs of dense training instead of the initialization: for deeper networks, and at high
sparsity, only those tickets still win.

Everything except the masked weights (biases, batch-norm parameters and running statistics) also
comes from the rewind point, so the ticket is exactly the network that training started from, with
pruned weights set to zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

import torch
from torch import nn

from distiller.errors import CheckpointError
from distiller.lottery.pruning import masks_sparsity
from distiller.naming import normalize_module_name

__all__ = ["Ticket", "make_ticket", "masks_from_zeros", "state_of"]


class Ticket(NamedTuple):
    """The ticket's full state dict and the binary masks of its pruned parameters."""

    state_dict: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    @property
    def sparsity(self) -> float:
        """Percent of the masked weights that are pruned."""
        return masks_sparsity(self.masks)[0]


def state_of(source: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached state dict with canonical names (no ``module.`` from DataParallel/DDP)."""
    state = source.state_dict() if isinstance(source, nn.Module) else source
    return {normalize_module_name(k): v.detach() for k, v in state.items()}


def masks_from_zeros(
    state: nn.Module | Mapping[str, torch.Tensor], names: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Masks read off a pruned model's weights: 1 where a weight is non-zero.

    Used when a trained checkpoint carries no masks (pruned outside Distiller, or by the original
    without a scheduler state). Only weights can be told apart this way: a trained bias or
    batch-norm value is essentially never exactly zero, so by default the masks cover the
    floating-point tensors of rank > 1 (convolution and linear weights). A weight with no zero gets
    an all-ones mask, which keeps it dense but counts it in the ticket's sparsity.

    Args:
        state: the trained model or its state dict.
        names: the tensors to mask (canonical names); default: every floating-point tensor of rank > 1.
    """
    tensors = state_of(state)
    if names is None:
        names = [k for k, v in tensors.items() if v.is_floating_point() and v.dim() > 1]
    return {normalize_module_name(n): (tensors[normalize_module_name(n)] != 0).to(torch.float32) for n in names}


def _check_fits(trained: Mapping[str, torch.Tensor], init: Mapping[str, torch.Tensor]) -> None:
    missing = sorted(set(trained) - set(init))
    extra = sorted(set(init) - set(trained))
    shapes = [
        f"{k}: trained {tuple(v.shape)} vs initial {tuple(init[k].shape)}"
        for k, v in trained.items()
        if k in init and v.shape != init[k].shape
    ]
    if missing or extra or shapes:
        details = "; ".join(
            part
            for part in (
                f"missing in the initial weights: {', '.join(missing[:5])}" if missing else "",
                f"not in the trained model: {', '.join(extra[:5])}" if extra else "",
                f"shape mismatch: {', '.join(shapes[:5])}" if shapes else "",
            )
            if part
        )
        raise CheckpointError(
            f"The trained and the initial weights are not of the same network ({details}). A ticket needs the "
            "initialization (or an early checkpoint) of the very run that was pruned."
        )


def _binary_masks(
    masks: Mapping[str, torch.Tensor | None], state: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    out = {}
    for name, mask in masks.items():
        if mask is None:
            continue
        key = normalize_module_name(name)
        if key not in state:
            raise CheckpointError(f"A mask is given for {key!r}, which the model does not have.")
        if mask.shape != state[key].shape:
            raise CheckpointError(
                f"The mask of {key!r} has shape {tuple(mask.shape)}, but the weight has {tuple(state[key].shape)}."
            )
        out[key] = (mask.detach().to("cpu") != 0).to(torch.float32)
    return out


def make_ticket(
    trained: nn.Module | Mapping[str, torch.Tensor],
    init: nn.Module | Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor | None] | None = None,
) -> Ticket:
    """The initial (or rewound) weights under the trained model's masks.

    Args:
        trained: the trained, pruned model or its state dict (only its masks matter: given, or read
            off its zeros).
        init: the weights to rewind to: the initialization, or a checkpoint after epoch k (late
            rewinding). Every tensor of the ticket comes from here.
        masks: ``{parameter: mask or None}``, e.g. the trained checkpoint's scheduler ``masks_dict``;
            ``None`` or no mask at all: :func:`masks_from_zeros` of ``trained``.

    Returns:
        ``Ticket(state_dict, masks)``: ``state_dict[k] == init[k]`` where the mask is 1, exactly 0 where
        it is 0; the masks are binary (any non-zero mask value keeps the weight).

    Raises:
        CheckpointError: the two states are of different networks, or a mask does not fit its weight.
    """
    trained_state, init_state = state_of(trained), state_of(init)
    _check_fits(trained_state, init_state)
    given = {k: m for k, m in (masks or {}).items() if m is not None}
    binary = _binary_masks(given or masks_from_zeros(trained_state), trained_state)
    state = {}
    for name, tensor in init_state.items():
        mask = binary.get(name)
        if mask is None:
            state[name] = tensor.clone()
        else:
            # where(), not a product: 0 * inf would be NaN, and -w * 0 a negative zero.
            state[name] = torch.where(mask.to(tensor.device) != 0, tensor, torch.zeros_like(tensor))
    return Ticket(state, binary)
