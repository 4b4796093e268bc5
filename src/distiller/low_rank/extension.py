"""Low-rank factorization as a schedule extension: ``TruncatedSVD`` (alias ``LowRankDecomposition``).

::

    extensions:
      tsvd:
        class: TruncatedSVD
        layers:
          fc1: {rank: 40}
          conv2: {energy: 0.95, method: spatial}
    policies:
      - extension: {instance_name: tsvd}
        epochs: [2]

The extension runs once, in ``on_minibatch_begin`` of the first epoch it is scheduled at (after
that epoch's pruners set their masks, as the thinning extensions do). It replaces the layers, moves
their place in the optimizer to the new parameters (fresh state) and gives the new parameters empty
maskers; training continues on the factorized model with the same optimizer object, and any
checkpoint saved afterwards records the factorization, so ``--resume-from`` rebuilds it.

The original Distiller had TSVD only as a notebook; this is the scheduled form.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.replace import low_rank_decompose
from distiller.low_rank.report import LowRankReport
from distiller.low_rank.spec import parse_layers, resolve_layers
from distiller.naming import normalize_module_name
from distiller.scheduler import EXTENSIONS
from distiller.scheduler.policies import ExtensionPolicy

__all__ = ["TruncatedSVD"]

log = logging.getLogger(__name__)


class TruncatedSVD(ExtensionPolicy):
    """Replace layers by truncated-SVD factorizations when scheduled.

    Args:
        layers: ``{module name: rank | {rank: k} | {energy: f}}``, each optionally with
            ``method`` (``channel``/``spatial`` for a Conv2d) and ``split``; see
            :func:`~distiller.low_rank.low_rank_decompose`.
        split: the default ``split`` (``sqrt``, ``first`` or ``second``).
        model: the model (given by the schedule loader): names and ranks are checked against it
            when the schedule is loaded, not only when the extension fires.
        name: the instance name in the schedule.

    Raises:
        ConfigError: a malformed ``layers`` entry, or (with ``model``) a layer the model lacks or
            that cannot be factorized as asked.
    """

    def __init__(
        self,
        layers: Mapping[str, Any],
        split: str = "sqrt",
        model: nn.Module | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.specs = parse_layers(layers, split=split)
        self.split = split
        self.name = name
        if model is not None:
            pending = [s for s in self.specs if not isinstance(_module(model, s.name), FactorizedLayer)]
            resolve_layers(model, pending)
        self.applied = False
        self.reports: list[LowRankReport] = []

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
        if self.applied:
            return
        self.applied = True
        # A run resumed from a checkpoint saved after the factorization has the layers factorized
        # already (the checkpoint replays them); only the others, if any, are factorized now.
        todo = {s.name: s.entry() for s in self.specs if not isinstance(_module(model, s.name), FactorizedLayer)}
        if not todo:
            return
        report = low_rank_decompose(
            model, todo, optimizer=optimizer or meta.get("optimizer"), masks=zeros_mask_dict, split=self.split
        )
        self.reports.append(report)
        for layer in report:
            log.info(
                "%s at epoch %d: %s (%s) -> rank %d (%s, %.1f%% energy): %d -> %d parameters",
                self.name or type(self).__name__,
                epoch,
                layer.name,
                layer.type,
                layer.rank,
                layer.method,
                100.0 * layer.energy,
                layer.params_before,
                layer.params_after,
            )

    def state_dict(self) -> dict[str, Any]:
        return {"applied": self.applied}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.applied = bool(state.get("applied", False))


def _module(model: nn.Module, name: str) -> nn.Module | None:
    for module_name, module in model.named_modules():
        if module_name and normalize_module_name(module_name) == name:
            return module
    return None


EXTENSIONS.register("TruncatedSVD", TruncatedSVD)
EXTENSIONS.register("LowRankDecomposition", TruncatedSVD)
