"""Shape attributes of modules (``out_channels``, ``num_features``, ...), derived from their tensors.

Thinning slices tensors; the attributes that describe them must follow, or ``repr``, summaries and
later thinning would see stale sizes. Deriving them from the new tensor shapes, instead of storing
them in the plan, keeps a plan minimal and cannot go out of sync (the original's recipes did: they
set ``out_channels`` of a conv whose output was not touched). Rules are pure functions of the
shapes, so a plan can be checked on simulated shapes before anything is changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from distiller.errors import ModelError
from distiller.graph.channel_ids import PER_CHANNEL_NORMS

Shapes = Mapping[str, torch.Size]
Rule = Callable[[nn.Module, str, Shapes], dict[str, int]]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM_TYPES = PER_CHANNEL_NORMS


def _check_bias(name: str, shapes: Shapes, out: int) -> None:
    bias = shapes.get("bias")
    if bias is not None and bias[0] != out:
        raise ModelError(
            f"Thinning left {name}.bias with {bias[0]} entries but {name} has {out} outputs; "
            "a plan must slice a layer's bias together with its weight."
        )


def _conv_attributes(module: nn.Module, name: str, shapes: Shapes) -> dict[str, int]:
    weight, groups = shapes["weight"], module.groups
    if module.transposed:  # weight is (in, out / groups, *kernel)
        in_c, out_c, new_groups = weight[0], weight[1] * groups, groups
    elif groups == 1:  # weight is (out, in, *kernel)
        out_c, in_c, new_groups = weight[0], weight[1], 1
    elif groups == module.in_channels and weight[1] == 1:
        # Depthwise (channel multiplier m): removing input channel c removes its m filters.
        multiplier = module.out_channels // groups
        if weight[0] % multiplier:
            raise ModelError(
                f"Thinning left {weight[0]} filters in depthwise convolution {name}, not a multiple of its "
                f"channel multiplier {multiplier}."
            )
        out_c, new_groups = weight[0], weight[0] // multiplier
        in_c = new_groups
    else:
        # Grouped: plans from the channel groups remove the same positions from every group.
        out_c, in_c, new_groups = weight[0], weight[1] * groups, groups
        if out_c % groups:
            raise ModelError(
                f"Cannot thin grouped convolution {name} (groups={groups}) to {out_c} filters: every group must "
                "keep the same number of filters."
            )
    _check_bias(name, shapes, out_c)
    return {"in_channels": in_c, "out_channels": out_c, "groups": new_groups}


def _norm_attributes(module: nn.Module, name: str, shapes: Shapes) -> dict[str, int]:
    sizes = {k: shapes[k][0] for k in ("weight", "bias", "running_mean", "running_var") if k in shapes}
    if not sizes:
        return {}
    if len(set(sizes.values())) != 1:
        raise ModelError(
            f"Thinning left normalization layer {name} with tensors of different lengths {sizes}; "
            "a plan must slice weight, bias, running_mean and running_var together."
        )
    return {"num_features": next(iter(sizes.values()))}


def _linear_attributes(module: nn.Module, name: str, shapes: Shapes) -> dict[str, int]:
    weight = shapes["weight"]
    _check_bias(name, shapes, weight[0])
    return {"in_features": weight[1], "out_features": weight[0]}


SHAPE_RULES: list[tuple[tuple[type[nn.Module], ...], Rule]] = [
    (_CONV_TYPES, _conv_attributes),
    (_NORM_TYPES, _norm_attributes),
    ((nn.Linear,), _linear_attributes),
]
"""(module types, rule) pairs, first match wins. Modules of other types keep their attributes."""


def module_tensor_shapes(module: nn.Module) -> dict[str, torch.Size]:
    """Shapes of the module's own parameters and buffers (not its children's)."""
    shapes = {n: t.shape for n, t in module.named_parameters(recurse=False)}
    shapes.update({n: t.shape for n, t in module.named_buffers(recurse=False)})
    return shapes


def derive_module_attributes(module: nn.Module, name: str, shapes: Shapes) -> dict[str, int]:
    """The shape attributes ``module`` must have when its tensors have ``shapes``.

    Raises:
        ModelError: the shapes are inconsistent (e.g. a bias not sliced with its weight) or the
            module cannot change size (grouped convolution).
    """
    for types, rule in SHAPE_RULES:
        if isinstance(module, types):
            return rule(module, name, shapes)
    return {}


def sync_module_attributes(module: nn.Module, name: str) -> None:
    """Set ``module``'s shape attributes from its current tensors."""
    for attr, value in derive_module_attributes(module, name, module_tensor_shapes(module)).items():
        setattr(module, attr, int(value))
