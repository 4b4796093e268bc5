"""``create_model``: build a registered architecture for a dataset, optionally with weights."""

from __future__ import annotations

import inspect
from pathlib import Path

import torch
from torch import nn

from distiller.errors import ConfigError, ModelError
from distiller.models.weights import (
    download_state_dict,
    load_state_dict_strict,
    pretrained_weights,
    read_weights_file,
)
from distiller.models.zoo import DATASET_INFO, MODELS, ModelEntry, check_dataset


def _build(entry: ModelEntry, num_classes: int) -> nn.Module:
    """Call the builder; builders registered without a ``num_classes`` parameter get none."""
    try:
        params = inspect.signature(entry.builder).parameters
    except (TypeError, ValueError):  # some C callables have no signature; assume the documented one
        return entry.builder(num_classes=num_classes)
    if "num_classes" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return entry.builder(num_classes=num_classes)
    if num_classes != entry.num_classes:
        raise ModelError(
            f"Model {entry.name!r} was registered with a builder that takes no num_classes argument, "
            f"so it cannot be built with {num_classes} classes."
        )
    return entry.builder()


def _pretrained_model(entry: ModelEntry, num_classes: int) -> nn.Module:
    if entry.pretrained_name is None:
        raise ModelError(
            f"Model {entry.name!r} ({entry.dataset}) has no pretrained weights; only ImageNet models that "
            "torchvision ships weights for do. Train it, or load a checkpoint with weights_path=FILE."
        )
    weights = pretrained_weights(entry.pretrained_name)
    n_pretrained = len(weights.meta.get("categories") or []) or entry.num_classes
    if num_classes != n_pretrained:
        raise ModelError(
            f"Pretrained weights of {entry.name!r} have {n_pretrained} classes, but {num_classes} were asked for. "
            "Build it pretrained with the default number of classes, then replace the classifier."
        )
    if entry.source == "torchvision":
        # torchvision's own builder knows the constructor settings its weights need (e.g. GoogLeNet's
        # transform_input), so let it build and load.
        from distiller.models.torchvision_models import build_pretrained

        return build_pretrained(entry.name, entry.pretrained_name)
    model = _build(entry, num_classes)
    state_dict = download_state_dict(entry.name, entry.pretrained_name)
    load_state_dict_strict(model, state_dict, entry.name, f"torchvision's {entry.pretrained_name} weights")
    return model


def _to_device(model: nn.Module, device: str | torch.device) -> nn.Module:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ConfigError(f"Invalid device {device!r}: {e}. Use 'cpu', 'cuda' or 'cuda:N'.") from None
    try:
        return model.to(dev)
    except (AssertionError, RuntimeError) as e:
        raise ModelError(f"Cannot move the model to device {str(dev)!r}: {e}") from None


def create_model(
    arch: str,
    dataset: str | None = None,
    pretrained: bool = False,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """Build model ``arch`` for ``dataset``, optionally with pretrained or stored weights.

    The model and dataset are checked against each other up front (an input-shape mismatch would
    otherwise surface as a cryptic shape error deep inside the first forward pass).

    Args:
        arch: a registered name (see :func:`list_models`); unknown names raise :class:`ConfigError`
            with the closest matches.
        dataset: the dataset the model will see; ``None`` means the architecture's native one. Its
            input shape must equal the native one (MNIST models also take FashionMNIST).
        pretrained: load torchvision's ImageNet weights (torchvision models, and Distiller's
            ResNet/ResNeXt/Wide-ResNet whose parameter names equal torchvision's).
        device: where the model goes (``"cpu"``, ``"cuda"``, ...).
        num_classes: output classes; defaults to the dataset's.
        weights_path: a local state dict (or checkpoint with ``state_dict``) to load instead of
            downloading; ``module.`` path elements in its keys are ignored.

    Returns:
        The model, with attributes ``arch``, ``dataset``, ``input_shape`` (without the batch dim)
        and ``num_classes``.

    Raises:
        ConfigError: unknown architecture, dataset or device string.
        ModelError: model and dataset do not fit, no pretrained weights, download or file failure.
    """
    entry = MODELS.get(arch)
    dataset = entry.dataset if dataset is None else check_dataset(dataset)
    input_shape, dataset_classes = DATASET_INFO[dataset]
    if input_shape != entry.input_shape:
        fitting = [name for name, e in MODELS.items() if e.input_shape == input_shape and e.source == "distiller"]
        raise ModelError(
            f"Model {arch!r} is built for {entry.dataset} inputs of shape {entry.input_shape}, but dataset "
            f"{dataset!r} has inputs of shape {input_shape}. Choose a model for {dataset}, e.g. "
            f"{', '.join(fitting[:4]) or '(none registered)'}."
        )
    if num_classes is None:
        num_classes = dataset_classes
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}.")

    if pretrained and weights_path is None:
        model = _pretrained_model(entry, num_classes)
    else:
        model = _build(entry, num_classes)
        if weights_path is not None:
            state_dict = read_weights_file(weights_path)
            load_state_dict_strict(model, state_dict, arch, f"file {str(weights_path)!r}")

    model.arch = arch
    model.dataset = dataset
    model.input_shape = tuple(input_shape)
    model.num_classes = num_classes
    return _to_device(model, device)
