"""Removing whole layers: SSL depth regularization can zero every weight of a convolution.

Zeroed convolutions still cost compute, and their BN layers still add constants, so a network whose
layers were zeroed and then fine-tuned without them must bypass them. ResNet-CIFAR models do this
with layer gates (``model.layer_gates[stage][block] == [gate_conv1, gate_conv2]``), which is what the
original Distiller's ``thinning.resnet_cifar_remove_layers`` switched off.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from distiller.errors import ModelError
from distiller.naming import normalize_module_name

_BLOCK_CONV = re.compile(r"^layer(\d+)\.(\d+)\.conv(\d+)$")


def find_zero_conv_layers(model: nn.Module) -> list[str]:
    """Canonical names of the ``Conv2d`` modules whose weights are all zero, in model order."""
    with torch.no_grad():
        return [
            normalize_module_name(name)
            for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d) and not torch.count_nonzero(module.weight)
        ]


def resnet_cifar_remove_layers(model: nn.Module) -> list[str]:
    """Turn off the layer gate of every all-zero block convolution of a ResNet-CIFAR model.

    Convolutions outside the residual blocks (the stem, the shortcuts) have no gate, and those of a
    block that changes resolution or width (it has a ``downsample`` shortcut) cannot be bypassed:
    both are left alone. Returns the names of the convolutions now bypassed.

    Raises:
        ModelError: the model (or the model wrapped by DataParallel/DDP) has no ``layer_gates``.
    """
    net = model if hasattr(model, "layer_gates") else getattr(model, "module", model)
    gates = getattr(net, "layer_gates", None)
    if gates is None:
        raise ModelError(
            f"{type(model).__name__} has no layer gates: removing layers works only for ResNet-CIFAR "
            "models (resnet20_cifar, resnet32_cifar, ...), whose blocks can bypass their convolutions."
        )
    removed = []
    for name in find_zero_conv_layers(model):
        match = _BLOCK_CONV.match(name)
        if match is None:
            continue
        stage, block, conv = (int(g) for g in match.groups())
        if getattr(net.get_submodule(f"layer{stage}.{block}"), "downsample", None) is not None:
            continue
        try:
            gates[stage - 1][block][conv - 1] = False
        except IndexError:
            raise ModelError(f"{name} has no layer gate: the model's layer_gates do not match its blocks.") from None
        removed.append(name)
    return removed
