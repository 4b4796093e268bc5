"""Thinning as a schedule extension: ``StructureRemover`` and its aliases ``FilterRemover`` and
``ChannelRemover``, with the original's arguments (``thinning_func_str``, ``arch``, ``dataset``).

The extension runs once in ``on_minibatch_begin`` of each scheduled epoch (or step), after the
pruners of that epoch have set their masks, and thins the model, the optimizer state and the masks
in place; training continues on the smaller model with the same optimizer object.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from distiller.errors import ConfigError
from distiller.scheduler import EXTENSIONS
from distiller.scheduler.policies import ExtensionPolicy
from distiller.thinning.api import thin_model

log = logging.getLogger(__name__)

THINNING_FUNCTIONS = {"remove_filters": "filters", "remove_channels": "channels", "contract_model": "both"}


class StructureRemover(ExtensionPolicy):
    """Remove masked filters/channels when scheduled.

    Args:
        thinning_func_str: ``remove_filters``, ``remove_channels`` or ``contract_model``.
        arch: accepted for compatibility (the model itself is analysed).
        dataset: the dataset whose input shape the graph is traced with (default: the model's own).
    """

    def __init__(
        self,
        thinning_func_str: str,
        arch: str | None = None,
        dataset: str | None = None,
        model: nn.Module | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        if thinning_func_str not in THINNING_FUNCTIONS:
            raise ConfigError(
                f"thinning_func_str must be one of {', '.join(THINNING_FUNCTIONS)}; got {thinning_func_str!r}."
            )
        self.thinning_func_str = thinning_func_str
        self.mode = THINNING_FUNCTIONS[thinning_func_str]
        self.arch = arch
        self.dataset = dataset
        self.name = name
        self.done_this_epoch = False
        self.reports: list[Any] = []

    def on_epoch_begin(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.done_this_epoch = False

    def on_minibatch_begin(
        self,
        model: nn.Module,
        epoch: int,
        minibatch_id: int,
        minibatches_per_epoch: int,
        zeros_mask_dict: Any,
        meta: dict[str, Any],
        optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        if self.done_this_epoch:
            return
        self.done_this_epoch = True
        dataset = self.dataset if getattr(model, "input_shape", None) is None else None
        report = thin_model(
            model, zeros_mask_dict, dataset=dataset, optimizer=optimizer or meta.get("optimizer"), mode=self.mode
        )
        self.reports.append(report)
        log.info(
            "%s (%s) at epoch %d: removed %d channels in %d groups",
            self.name or type(self).__name__,
            self.thinning_func_str,
            epoch,
            report.num_removed,
            len(report.removed),
        )

    def on_epoch_end(self, model: nn.Module, zeros_mask_dict: Any, meta: dict[str, Any], **kwargs: Any) -> None:
        self.done_this_epoch = False


EXTENSIONS.register("StructureRemover", StructureRemover)
EXTENSIONS.register("FilterRemover", StructureRemover)
EXTENSIONS.register("ChannelRemover", StructureRemover)
