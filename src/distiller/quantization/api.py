"""One-call post-training quantization: ``distiller.quantize(model, config, calibration_loader)``."""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError, GraphError, QuantizationError
from distiller.quantization.calibration import calibration_forward, collect_quant_stats
from distiller.quantization.post_train import PostTrainLinearQuantizer

__all__ = ["calibrate", "quantize", "quantizer_config_from_file", "rebuild_quantized_model", "resolve_stats_path"]


def calibrate(
    model: nn.Module,
    calibration_loader: Iterable[Any],
    example_input: torch.Tensor,
    *,
    device: str | torch.device = "cpu",
    save_path: str | os.PathLike | None = None,
    across_ranks: bool = False,
) -> dict[str, dict[str, Any]]:
    """Calibration statistics of ``model`` under the module names the quantizer will use.

    The statistics are collected on a modularized copy (functional ops as modules), so that
    ``x + y`` in a ``forward`` gets an entry (``layer1.0.add``) like the original's explicit modules.
    With ``across_ranks`` (a DDP job, every rank calling with its share of the calibration data) the
    statistics of all ranks are merged (see :func:`~distiller.quantization.calibration.collect_quant_stats`).
    """
    from distiller.quantization.modularize import modularize

    work = copy.deepcopy(model).eval()
    with contextlib.suppress(GraphError):  # module-only quantization: statistics of the modules as they are
        work = modularize(work, example_input)
    run_forward = calibration_forward(calibration_loader, device)
    return collect_quant_stats(work, run_forward, save_path=save_path, across_ranks=across_ranks)


def quantizer_config_from_file(path: str | os.PathLike) -> dict[str, Any]:
    """The arguments of the ``PostTrainLinearQuantizer`` in a YAML file's ``quantizers:`` section."""
    from distiller.config.yaml_source import load_yaml_file

    source = load_yaml_file(Path(path))
    section = (source.data or {}).get("quantizers") if isinstance(source.data, Mapping) else None
    if not section:
        raise ConfigError(f"{path}: no 'quantizers:' section. Fix: add one with a PostTrainLinearQuantizer.")
    if len(section) != 1:
        raise ConfigError(f"{path}: quantizers: only one quantizer is supported, found {', '.join(section)}.")
    ((name, body),) = section.items()
    body = dict(body or {})
    cls = body.pop("class", None)
    if cls != "PostTrainLinearQuantizer":
        raise ConfigError(
            f"{path}: quantizers.{name}.class is {cls!r}; post-training quantization needs PostTrainLinearQuantizer."
        )
    stats = body.get("model_activation_stats")
    if isinstance(stats, str):
        body["model_activation_stats"] = str(resolve_stats_path(stats, Path(path)))
    return body


def resolve_stats_path(value: str, config_path: Path) -> Path:
    """A statistics path from a config file: as given, else relative to the config, else beside it.

    The original's sample configs give paths relative to its example folder; a file of the same name
    next to the config is the usual copy.
    """
    given = Path(value)
    for candidate in (given, config_path.parent / given, config_path.parent / given.name):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"{config_path}: model_activation_stats {value!r} not found (looked relative to the working folder and "
        f"to {config_path.parent}). Fix: give the statistics file's path, or pass --qe-stats-file."
    )


def quantize(
    model: nn.Module,
    config: Mapping[str, Any] | str | os.PathLike | None = None,
    calibration_loader: Iterable[Any] | None = None,
    *,
    example_input: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """A post-training-quantized copy of ``model`` (the input model is not changed).

    Args:
        model: a float model.
        config: ``PostTrainLinearQuantizer`` arguments (a dict, or a YAML file with a ``quantizers:``
            section); default 8-bit symmetric.
        calibration_loader: batches (``(inputs, targets)`` or inputs) to calibrate on: static mode,
            deployable with :func:`distiller.export_onnx`. Without it, the config's
            ``model_activation_stats`` are used, or else dynamic mode.
        example_input: a batch the model accepts (default: the first calibration batch, or the
            model's ``input_shape``).
        device: where calibration runs.

    Returns:
        The quantized model (a new module; its ``quantizer`` attribute is the quantizer).
    """
    settings = dict(quantizer_config_from_file(config) if isinstance(config, (str, os.PathLike)) else (config or {}))
    if example_input is None:
        example_input = _example(model, calibration_loader)
    if calibration_loader is not None:
        if settings.get("model_activation_stats") is not None:
            raise ConfigError("quantize: give either a calibration_loader or model_activation_stats, not both.")
        settings["model_activation_stats"] = calibrate(model, calibration_loader, example_input, device=device)
    work = copy.deepcopy(model).eval()
    try:
        quantizer = PostTrainLinearQuantizer(work, **settings)
    except TypeError as exc:
        raise ConfigError(f"quantize: {exc}. Fix: use the arguments of PostTrainLinearQuantizer.") from exc
    prepared = quantizer.prepare_model(example_input)
    prepared.quantizer_metadata = quantizer.quantizer_metadata
    object.__setattr__(prepared, "quantizer", quantizer)
    return prepared


def _example(model: nn.Module, loader: Iterable[Any] | None) -> torch.Tensor:
    if loader is not None:
        for batch in loader:
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            return x[:1]
    from distiller.graph import example_input

    try:
        return example_input(model, None)
    except Exception as exc:  # noqa: BLE001
        raise QuantizationError(
            f"quantize: cannot tell the model's input shape ({exc}). Fix: pass example_input=."
        ) from exc


def rebuild_quantized_model(model: nn.Module, metadata: Mapping[str, Any]) -> nn.Module:
    """The quantized model a checkpoint's ``quantizer_metadata`` describes, built around ``model``.

    The structure (modules, wrappers, buffers) is re-created from the stored settings and statistics;
    load the checkpoint's ``state_dict`` into the result to get its weights and scales back.
    """
    kind = metadata.get("type")
    if kind != "PostTrainLinearQuantizer":
        raise QuantizationError(
            f"the checkpoint was quantized by {kind!r}; only PostTrainLinearQuantizer checkpoints are rebuilt here"
        )
    params = dict(metadata.get("params") or {})
    shape = metadata.get("dummy_input_shape") or None
    from distiller.graph import example_input

    dummy = torch.zeros(shape) if shape else example_input(model, None)
    quantizer = PostTrainLinearQuantizer(model.eval(), **params)
    prepared = quantizer.prepare_model(dummy)
    prepared.quantizer_metadata = dict(metadata)
    return prepared
