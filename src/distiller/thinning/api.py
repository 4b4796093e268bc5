"""Thinning entry points: :func:`thin_model`, and the original's ``remove_filters`` /
``remove_channels`` / ``contract_model``.

Each builds the model's graph on an input of its dataset's shape, derives a plan from the masks
(:func:`~distiller.thinning.from_masks.plan_from_masks`) and applies it to the model, the optimizer
state and the masks in place. The plan is recorded on the model, so a checkpoint saved afterwards
rebuilds the thinned shapes when loaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from distiller.graph.model_graph import ModelGraph, example_input
from distiller.thinning.from_masks import ThinningReport, plan_from_masks

log = logging.getLogger(__name__)


def _masks_of(zeros_mask_dict: Any) -> Mapping[str, Any] | None:
    """Accept a MaskSet/SchedulerMasks, the original's {name: ParameterMasker}, or {name: tensor}."""
    if zeros_mask_dict is None:
        return None
    masks = getattr(zeros_mask_dict, "masks", zeros_mask_dict)  # a CompressionScheduler
    return masks if isinstance(masks, Mapping) else None


def thin_model(
    model: nn.Module,
    masks: Any = None,
    *,
    dataset: str | None = None,
    example: torch.Tensor | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    mode: str = "both",
) -> ThinningReport:
    """Remove the masked (or all-zero) filters and channels of ``model`` in place.

    Args:
        model: the model; its ``input_shape`` (zoo models) or ``dataset`` or ``example`` gives the input.
        masks: {parameter name: mask or masker}, a scheduler, or None (exact zeros count as masked).
        dataset: dataset whose input shape the graph is traced with (default: the model's own).
        example: an example input batch instead of ``dataset``.
        optimizer: optimizer whose per-parameter state (momentum, Adam moments) is thinned too.
        mode: ``filters``, ``channels`` or ``both`` (see :func:`plan_from_masks`).

    Returns:
        The report: the applied plan, removed channels per group, folded constants.
    """
    masks = _masks_of(masks)
    if example is None:
        example = example_input(model, dataset)
    graph = ModelGraph(model, example[:1], allow_fallback=False)
    report = plan_from_masks(graph, masks, mode=mode)
    if len(report.plan) or report.plan.shifts:
        report.plan.apply(model, optimizer, masks)  # type: ignore[arg-type]
    if report.approximate:
        log.warning(
            "Folded constants of removed channels into zero-padded convolutions %s: exact away from the "
            "feature-map borders only.",
            ", ".join(report.approximate),
        )
    return report


def _original_entry_point(name: str, mode: str, doc: str) -> Callable[..., nn.Module]:
    """The original's ``remove_*(model, zeros_mask_dict, arch, dataset, optimizer)`` for ``mode``."""

    def thin(
        model: nn.Module,
        zeros_mask_dict: Any = None,
        arch: str | None = None,
        dataset: str | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> nn.Module:
        del arch  # the original needed it for its dummy input; the model's own input shape serves now
        thin_model(model, zeros_mask_dict, dataset=dataset, optimizer=optimizer, mode=mode)
        return model

    thin.__name__ = thin.__qualname__ = name
    thin.__doc__ = doc
    return thin


remove_filters = _original_entry_point(
    "remove_filters", "filters", "Remove masked filters and the channels they fed (the original's ``remove_filters``)."
)
remove_channels = _original_entry_point(
    "remove_channels", "channels", "Remove masked input channels and the filters that produced them."
)
contract_model = _original_entry_point(
    "contract_model", "both", "Remove masked filters and masked channels (the original's ``contract_model``)."
)
