"""Every torchvision classification model, registered by name.

Each is registered as ``torchvision.NAME`` and, where Distiller has no architecture of that name, also
as plain ``NAME`` (so ``alexnet`` is torchvision's, while ``resnet18`` is Distiller's hook-friendly
variant and ``torchvision.resnet18`` is torchvision's).
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from distiller.models.weights import download_guard, pretrained_weights
from distiller.models.zoo import MODELS, Builder, ModelEntry, register_entry

#: Constructor settings that make these models return a plain tensor in training mode too (no
#: auxiliary-classifier tuples), so an ordinary ``loss(model(x), y)`` loop works with them.
_PLAIN_OUTPUT: dict[str, dict[str, Any]] = {
    "googlenet": {"aux_logits": False},
    "inception_v3": {"aux_logits": False},
}
#: Keep the current weight init explicitly (torchvision warns that its default will change).
_RANDOM_INIT: dict[str, dict[str, Any]] = {
    "googlenet": {"init_weights": True},
    "inception_v3": {"init_weights": True},
}


def torchvision_names() -> list[str]:
    """Names of torchvision's image-classification models (those in ``torchvision.models`` itself)."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def _builder(name: str) -> Builder:
    def build(num_classes: int = 1000) -> nn.Module:
        kwargs = {**_PLAIN_OUTPUT.get(name, {}), **_RANDOM_INIT.get(name, {})}
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = f"torchvision's {name}, randomly initialized."
    return build


def build_pretrained(arch: str, name: str) -> nn.Module:
    """torchvision model ``name`` with its default ImageNet weights (downloaded under a timeout)."""
    weights = pretrained_weights(name)
    with download_guard(arch):
        # torchvision insists on building these with their auxiliary heads when it loads weights.
        model = torchvision.models.get_model(name, weights=weights, progress=False)
    if name in _PLAIN_OUTPUT:
        _drop_auxiliary_heads(model)
    return model


def _drop_auxiliary_heads(model: nn.Module) -> None:
    """Remove GoogLeNet / Inception v3 auxiliary classifiers (what torchvision does for aux_logits=False)."""
    model.aux_logits = False
    for attr in ("aux1", "aux2", "AuxLogits"):
        if hasattr(model, attr):
            setattr(model, attr, None)


def _has_weights(name: str) -> bool:
    try:
        return torchvision.models.get_model_weights(name).DEFAULT is not None
    except (ValueError, KeyError, AttributeError):
        return False


def register_torchvision_models() -> None:
    """Register all torchvision classifiers; run after Distiller's own models so they keep their names."""
    for name in torchvision_names():
        if f"torchvision.{name}" in MODELS:
            continue
        build = _builder(name)
        pretrained_name = name if _has_weights(name) else None
        register_entry(ModelEntry(f"torchvision.{name}", build, "imagenet", "torchvision", pretrained_name))
        if name not in MODELS:
            register_entry(ModelEntry(name, build, "imagenet", "torchvision", pretrained_name))
