"""Early exit in the classifier app: the training criterion, the simulated validation and its report.

A model with exits (a ``*_earlyexit`` architecture, or any model after
:func:`~distiller.early_exit.attach_exits`) returns ``[exit_0, ..., final]``. The app then

* trains with :class:`~distiller.early_exit.EarlyExitCriterion` (``--earlyexit_lossweights``) and
  reports the training accuracy of the final classifier;
* validates and tests with :func:`earlyexit_evaluate`: every sample is scored by the exit the
  decision rule sends it to (``--earlyexit_thresholds``, ``--earlyexit-rule``), and the per-exit
  statistics are logged (stdout) before the run's result line.

The result line of such a run (``==> Top1 ... Top5 ... Loss``) holds the *simulated totals*: the
accuracy of the network with early exiting (the original's "Totals for entire network with early
exits"), and the mean loss of the final classifier (the loss the original reported).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from distiller.apps.earlyexit_options import EarlyExitOptions
from distiller.apps.loops import EvalResult, _due, _progress, log_progress
from distiller.apps.options import ClassifierOptions
from distiller.early_exit import (
    EarlyExitCriterion,
    EarlyExitStats,
    ExitCosts,
    ExitSimulation,
    check_loss_weights,
    exit_macs,
    format_stats,
    has_exits,
    num_exits,
)
from distiller.early_exit.decision import check_rule
from distiller.errors import ConfigError
from distiller.loggers import DataLogger

__all__ = ["EarlyExitEvalResult", "EarlyExitRun", "earlyexit_evaluate", "log_exit_stats"]

log = logging.getLogger(__name__)


@dataclass
class EarlyExitEvalResult(EvalResult):
    """An evaluation of a model with exits: ``top1``/``top5`` are the simulated totals, ``loss`` the final
    classifier's mean loss, ``exits`` the per-exit statistics."""

    exits: EarlyExitStats | None = None
    costs: ExitCosts | None = None


@torch.no_grad()
def earlyexit_evaluate(
    model: nn.Module,
    loader: Iterable,
    thresholds: Sequence[float],
    rule: str = "entropy",
    device: torch.device | str = "cpu",
    progress: bool = True,
    desc: str = "eval",
    loggers: Sequence[DataLogger] = (),
    epoch: int = -1,
    print_freq: int = 10,
    phase: str = "valid",
    costs: ExitCosts | None = None,
) -> EarlyExitEvalResult:
    """Evaluate a model with exits (eval mode), simulating early exiting sample by sample.

    Args:
        model: returns ``[exit_0, ..., final]``.
        loader: batches of (inputs, labels).
        thresholds: one per early exit.
        rule: ``entropy`` (default) or ``ce``; see :mod:`distiller.early_exit.decision`.
        costs: the exits' MACs (:func:`~distiller.early_exit.exit_macs`), for the average MACs per
            sample; counted on the first batch when None.
        device, progress, desc, loggers, epoch, print_freq, phase: as :func:`distiller.apps.loops.evaluate`.
    """
    model.eval()
    simulation = ExitSimulation(thresholds, rule)
    steps = len(loader)  # type: ignore[arg-type]
    for step, (inputs, target) in enumerate(_progress(loader, steps, desc, progress)):
        inputs, target = inputs.to(device), target.to(device)
        if costs is None:
            costs = exit_macs(model, inputs)
        outputs = model(inputs)
        simulation.update(outputs, target)
        if loggers and _due(step + 1, steps, print_freq):
            top1, top5 = simulation.running_top()
            stats = {"Loss": simulation.final_loss, "Top1": top1, "Top5": top5}
            log_progress(loggers, phase, stats, epoch, step + 1, steps, print_freq)
    stats = simulation.result(
        costs.cumulative if costs is not None else None, costs.backbone if costs is not None else None
    )
    return EarlyExitEvalResult(
        top1=stats.top1,
        top5=stats.top5,
        loss=stats.final_loss,
        num_samples=stats.num_samples,
        exits=stats,
        costs=costs,
    )


def log_exit_stats(result: EvalResult, title: str) -> None:
    """Log the per-exit report of ``result`` (nothing for a model without exits)."""
    stats = getattr(result, "exits", None)
    if stats is None:
        return
    lines = format_stats(stats)
    log.info("%s %s", title, lines[0])
    for line in lines[1:]:
        log.info("  %s", line)


def _modes_without_exits(opts: ClassifierOptions) -> dict[str, bool]:
    """The app's modes that expect one output tensor (or a traced graph, which does not see the exits)."""
    return {
        "--quantize-eval": opts.quant.quantize_eval,
        "--qe-calibration": opts.quant.calibration is not None,
        "--sense": opts.analysis.sensitivity is not None,
        "--act-hist": opts.analysis.activation_histograms is not None,
        "--greedy": bool(getattr(getattr(opts, "greedy", None), "enabled", False)),
        "--thinnify": opts.thinnify,
        "--kd-teacher": bool(opts.kd_teacher),
        "--onnx-model": opts.onnx_model is not None,
        "--export-onnx": opts.export_onnx is not None,
        "--confusion": opts.confusion,
    }


class EarlyExitRun:
    """The early-exit settings of one app run, checked against the model up front.

    Build it with :meth:`for_model`, which returns None for a model without exits.
    """

    def __init__(self, model: nn.Module, opts: EarlyExitOptions) -> None:
        self.opts = opts
        self.num_exits = num_exits(model)
        check_rule(opts.rule)
        if opts.lossweights:
            check_loss_weights(opts.lossweights, self.num_exits)
        if opts.thresholds and len(opts.thresholds) != self.num_exits:
            raise ConfigError(
                f"--earlyexit_thresholds has {len(opts.thresholds)} value(s) but the model has {self.num_exits} "
                f"early exit(s); give exactly {self.num_exits}."
            )
        self._costs: ExitCosts | None = None  # the exits' MACs, counted at the first evaluation

    @classmethod
    def for_model(cls, model: nn.Module, opts: ClassifierOptions) -> EarlyExitRun | None:
        """The run's settings for a model with exits; None for other models (which must get no flags).

        Raises:
            ConfigError: early-exit flags for a model without exits, wrong counts or weights, or a mode
                that does not handle the list output of a model with exits.
        """
        if has_exits(model):
            unsupported = [flag for flag, on in _modes_without_exits(opts).items() if on]
            if unsupported:
                raise ConfigError(
                    f"{', '.join(unsupported)} do(es) not support models with early exits (their forward returns "
                    "[exit_0, ..., final]). Train or evaluate the early-exit model, or use the architecture "
                    "without exits (e.g. resnet20_cifar) for this mode."
                )
            return cls(model, opts.earlyexit)
        if opts.earlyexit.given:
            raise ConfigError(
                "--earlyexit_lossweights / --earlyexit_thresholds apply to models with early exits, and this "
                "model has none. Use a *_earlyexit architecture (distiller list models), or drop the flags."
            )
        return None

    def _example(self) -> str:
        return " ".join(["0.9"] * self.num_exits)

    def criterion(self) -> EarlyExitCriterion:
        """The training loss; training also validates, so the thresholds are required as well."""
        if not self.opts.lossweights:
            example = " ".join([f"{0.6 / self.num_exits:.2g}"] * self.num_exits)
            raise ConfigError(
                f"Training a model with {self.num_exits} early exit(s) needs --earlyexit_lossweights (one weight "
                f"per exit, sum < 1, e.g. --earlyexit_lossweights {example})."
            )
        self._require_thresholds()
        return EarlyExitCriterion(self.opts.lossweights)

    def _require_thresholds(self) -> None:
        if not self.opts.thresholds:
            raise ConfigError(
                f"Evaluating a model with {self.num_exits} early exit(s) needs --earlyexit_thresholds (one per "
                f"exit, e.g. --earlyexit_thresholds {self._example()}), which decide where each sample exits."
            )

    def evaluate(self, model: nn.Module, loader: Iterable, **kwargs) -> EarlyExitEvalResult:
        """:func:`earlyexit_evaluate` with this run's thresholds and rule (the exits' MACs are counted once).

        Args:
            model: the model with exits.
            loader: the validation or test loader.
            **kwargs: ``device``, ``progress``, ``desc``, ``loggers``, ``epoch``, ``print_freq``, ``phase``.
        """
        self._require_thresholds()
        result = earlyexit_evaluate(model, loader, self.opts.thresholds, self.opts.rule, costs=self._costs, **kwargs)
        self._costs = result.costs
        return result
