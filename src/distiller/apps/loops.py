"""One epoch of training and one pass of evaluation, with the compression-scheduler hooks.

These are plain functions that a user's own training loop can copy: they show exactly where each
of the scheduler's six hooks is called.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from distiller.apps.meters import AccuracyMeter, AverageMeter
from distiller.loggers import PHASE_PREFIXES, DataLogger
from distiller.scheduler import CompressionScheduler

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Accuracy (percent) and mean loss of one evaluation pass."""

    top1: float
    top5: float
    loss: float
    num_samples: int = 0
    confusion: torch.Tensor | None = None

    def result_line(self) -> str:
        """The line scripts parse (DESIGN §7)."""
        return f"==> Top1: {self.top1:.3f}    Top5: {self.top5:.3f}    Loss: {self.loss:.3f}"


@dataclass
class TrainResult:
    """Training metrics of one epoch; ``losses`` holds the named loss components."""

    top1: float
    top5: float
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _progress(iterable: Iterable, total: int, desc: str, enabled: bool):
    """A tqdm progress bar on stderr, shown only on a terminal (never in logs or CI)."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True)


def _due(completed: int, total: int, print_freq: int) -> bool:
    """Log every ``print_freq`` minibatches and at the last one (``print_freq <= 0``: only the last)."""
    return completed == total or (print_freq > 0 and completed % print_freq == 0)


def log_progress(
    loggers: Sequence[DataLogger],
    phase: str,
    stats: Mapping[str, float],
    epoch: int,
    completed: int,
    total: int,
    print_freq: int,
) -> None:
    """Send one progress record, ``(PHASE_PREFIXES[phase], stats)``, to every logger."""
    record = (PHASE_PREFIXES.get(phase, phase), OrderedDict(stats))
    for logger in loggers:
        logger.log_training_progress(record, epoch, completed, total, print_freq)


def train_one_epoch(
    model: nn.Module,
    loader: Iterable,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: CompressionScheduler | None,
    epoch: int,
    device: torch.device | str = "cpu",
    print_freq: int = 10,
    progress: bool = True,
    loggers: Sequence[DataLogger] = (),
    output_logits: Callable[[object], torch.Tensor] | None = None,
) -> TrainResult:
    """Train ``model`` for one pass over ``loader``, calling the scheduler's minibatch hooks.

    Every ``print_freq`` minibatches, and at the last one, the running means are sent to ``loggers``
    as ``("Performance/Training/", {"Overall Loss", "Objective Loss", <loss components>, "Top1",
    "Top5", "LR", "Time"})`` (``Time``: mean seconds per minibatch), the original's record.

    ``output_logits`` picks the logits that the accuracy is measured on from the model's output, for
    models that return several outputs (an early-exit model's ``[exit_0, ..., final]``: its final
    classifier, :func:`distiller.early_exit.final_output`); ``criterion`` gets the whole output.
    """
    model.train()
    steps = len(loader)  # type: ignore[arg-type]
    accuracy = AccuracyMeter()
    meters: dict[str, AverageMeter] = {"Overall Loss": AverageMeter(), "Objective Loss": AverageMeter()}
    batch_time = AverageMeter()
    start = last = time.perf_counter()
    for step, (inputs, target) in enumerate(_progress(loader, steps, f"epoch {epoch}", progress)):
        inputs, target = inputs.to(device), target.to(device)
        if scheduler is not None:
            scheduler.on_minibatch_begin(epoch, step, steps, optimizer)
        output = model(inputs)
        loss = criterion(output, target)
        accuracy.update((output_logits(output) if output_logits else output).detach(), target)
        meters["Objective Loss"].update(loss.item(), target.numel())
        if scheduler is not None:
            policy_loss = scheduler.before_backward_pass(
                epoch, step, steps, loss, optimizer=optimizer, return_loss_components=True, targets=target
            )
            loss = policy_loss.overall_loss
            for component in policy_loss.loss_components:
                meters.setdefault(component.name, AverageMeter()).update(component.value.item(), target.numel())
        meters["Overall Loss"].update(loss.item(), target.numel())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if scheduler is not None:
            scheduler.before_parameter_optimization(epoch, step, steps, optimizer)
        optimizer.step()
        if scheduler is not None:
            scheduler.on_minibatch_end(epoch, step, steps, optimizer)
        now = time.perf_counter()
        batch_time.update(now - last)
        last = now
        if loggers and _due(step + 1, steps, print_freq):
            stats = {name: m.mean for name, m in meters.items()}
            stats.update(Top1=accuracy.value(1), Top5=accuracy.value(5), LR=optimizer.param_groups[0]["lr"])
            stats["Time"] = batch_time.mean
            log_progress(loggers, "train", stats, epoch, step + 1, steps, print_freq)
    return TrainResult(
        top1=accuracy.value(1),
        top5=accuracy.value(5),
        losses={name: m.mean for name, m in meters.items()},
        seconds=time.perf_counter() - start,
    )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    criterion: nn.Module,
    device: torch.device | str = "cpu",
    num_classes: int | None = None,
    progress: bool = True,
    desc: str = "eval",
    loggers: Sequence[DataLogger] = (),
    epoch: int = -1,
    print_freq: int = 10,
    phase: str = "valid",
) -> EvalResult:
    """Evaluate ``model`` (in eval mode) on every batch of ``loader``.

    Every ``print_freq`` minibatches, and at the last one, the running ``Loss``, ``Top1`` and
    ``Top5`` go to ``loggers`` with the prefix of ``phase`` (``valid``: ``Performance/Validation/``,
    ``test``: ``Performance/Test/``) at ``epoch`` (``-1``: outside training).
    """
    model.eval()
    accuracy = AccuracyMeter(num_classes=num_classes)
    loss_meter = AverageMeter()
    steps = len(loader)  # type: ignore[arg-type]
    for step, (inputs, target) in enumerate(_progress(loader, steps, desc, progress)):
        inputs, target = inputs.to(device), target.to(device)
        output = model(inputs)
        loss_meter.update(criterion(output, target).item(), target.numel())
        accuracy.update(output, target)
        if loggers and _due(step + 1, steps, print_freq):
            stats = {"Loss": loss_meter.mean, "Top1": accuracy.value(1), "Top5": accuracy.value(5)}
            log_progress(loggers, phase, stats, epoch, step + 1, steps, print_freq)
    return EvalResult(
        top1=accuracy.value(1),
        top5=accuracy.value(5),
        loss=loss_meter.mean,
        num_samples=accuracy.count,
        confusion=accuracy.confusion,
    )
