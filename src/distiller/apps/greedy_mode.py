"""``--greedy``: the classifier app's greedy filter pruning mode.

The search is :func:`~distiller.pruning.greedy.greedy_filter_pruning`; this module gives it the
app's data, training and evaluation functions and writes its files under the run's log dir
(DESIGN §7):

``greedy.csv``
    one row per iteration, the original's columns ``iteration, top1, param_name, normalized_macs,
    total_macs, densities``; rewritten atomically after every iteration, so it is complete even if
    the run is stopped.
``greedy__<iteration>__<MACs %>__<top1>_checkpoint.pth.tar``
    the network of each iteration (the original's names), thinned, with its thinning plans: it loads
    with ``--resume-from`` into a dense model of the same ``--arch``.
``greedy_<target density>_checkpoint.pth.tar``
    the final network again under a stable name, with its test accuracy.

Candidates are fine-tuned on the training split (``--effective-train-size`` of it per epoch) and
scored on the validation split; the test set is read once, for the final network (the result line).
With ``--vs 0`` there is no validation split, so candidates are scored on a fixed, seeded subset of
the training split (``--effective-valid-size`` of it) rather than on the test set.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tabulate import tabulate
from torch import nn
from torch.utils.data import DataLoader

from distiller.apps.data_loggers import console_loggers
from distiller.apps.greedy_options import check_greedy_options
from distiller.apps.loops import EvalResult, evaluate, train_one_epoch
from distiller.apps.optimizers import build_optimizer
from distiller.checkpoint import build_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.determinism import derive_seed, seed_everything
from distiller.fileio import atomic_output
from distiller.pruning.greedy import (
    CSV_COLUMNS,
    GreedyRecord,
    GreedyResult,
    conv_weight_sizes,
    greedy_filter_pruning,
)

if TYPE_CHECKING:
    from distiller.apps.classifier import ClassifierApp, ClassifierResult
    from distiller.data.loaders import DataLoaders

__all__ = [
    "CSV_NAME",
    "finetuning_passes",
    "greedy_pruning_mode",
    "greedy_search",
    "save_greedy_checkpoint",
    "write_greedy_csv",
]

log = logging.getLogger(__name__)

CSV_NAME = "greedy.csv"


def write_greedy_csv(records: list[GreedyRecord], path: Path) -> None:
    """Write every record so far, atomically (a reader never sees half a file)."""
    with atomic_output(path, "greedy pruning CSV") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for record in records:
            writer.writerow(record.csv_row())


def finetuning_passes(epochs: float, steps_per_epoch: int) -> list[int]:
    """Mini-batches of each training pass for ``epochs`` (a float): whole epochs, then a prefix of
    ``round(fraction * steps_per_epoch)`` batches for the fraction (none if it rounds to 0)."""
    whole = math.floor(epochs)
    rest = round((epochs - whole) * steps_per_epoch)
    return [steps_per_epoch] * whole + ([rest] if rest > 0 else [])


class _Prefix:
    """The first ``batches`` mini-batches of a loader, with a length, for a fraction of an epoch."""

    def __init__(self, loader: DataLoader, batches: int) -> None:
        self.loader, self.batches = loader, batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.batches)


class _GreedyRun:
    """The callbacks of one search: fine-tuning, scoring, and the files of each iteration."""

    def __init__(self, app: ClassifierApp, loaders: DataLoaders) -> None:
        self.app, self.opts, self.loaders = app, app.opts, loaders
        self.scoring = self._scoring_loader()
        self.records: list[GreedyRecord] = []
        self.csv_path = app.run_dir / CSV_NAME
        self.layers = list(conv_weight_sizes(app.model))  # what each record's densities refer to
        self._iteration, self._first_pass, self._passes = 0, 0, 0

    def _scoring_loader(self) -> DataLoader:
        loaders = self.loaders
        if loaders.valid is not None and loaders.valid is not loaders.test:
            return loaders.valid
        size = self.opts.effective_valid_size
        log.warning(
            "--vs 0 leaves no validation split: greedy pruning scores candidates on a fixed subset of the training "
            "split (--effective-valid-size %g of it), never on the test set. Its accuracies are training accuracies.",
            size,
        )
        return loaders.calibration_loader(size)

    def finetune(self, model: nn.Module, iteration: int, epochs: float) -> None:
        """Train a candidate with a fresh optimizer of the run's hyper-parameters.

        Every candidate of an iteration sees the same mini-batches in the same order and starts from
        the same random state, so the ranking compares the layers, not the luck of the draw. Each
        pass draws the training subset of its own epoch number, counted across iterations.
        """
        o, app = self.opts, self.app
        if iteration != self._iteration:
            self._first_pass += self._passes
            self._iteration = iteration
        passes = finetuning_passes(epochs, len(self.loaders.train))
        self._passes = len(passes)
        optimizer = build_optimizer(o.optimizer, model.parameters(), o.lr, o.momentum, o.weight_decay)
        for i, batches in enumerate(passes):
            epoch = self._first_pass + i
            self.loaders.set_epoch(epoch)
            seed_everything(derive_seed(app.seed, "greedy", epoch))
            loader = self.loaders.train if batches == len(self.loaders.train) else _Prefix(self.loaders.train, batches)
            train_one_epoch(
                model, loader, app.criterion, optimizer, None, epoch, app.device, o.print_freq, o.progress,
                loggers=console_loggers(app.loggers),
            )

    def evaluate(self, model: nn.Module) -> EvalResult:
        o, app = self.opts, self.app
        return evaluate(
            model, self.scoring, app.criterion, app.device, None, o.progress, "greedy",
            loggers=console_loggers(app.loggers), epoch=self._iteration, print_freq=o.print_freq, phase="valid",
        )

    def on_iteration(self, record: GreedyRecord, model: nn.Module) -> None:
        self.records.append(record)
        write_greedy_csv(self.records, self.csv_path)
        if self.csv_path not in self.app.saved:
            self.app.saved.append(self.csv_path)
        name = f"greedy__{record.iteration:03d}__{100 * record.normalized_macs:.1f}__{record.top1:.1f}"
        save_greedy_checkpoint(self.app, model, name, record, self.layers)


def save_greedy_checkpoint(
    app: ClassifierApp,
    model: nn.Module,
    name: str,
    record: GreedyRecord | None,
    layers: list[str],
    **extras: Any,
) -> Path:
    """Save ``model`` as ``<log dir>/<name>_checkpoint.pth.tar`` and list it in ``app.saved``.

    The epoch is -1, so ``--resume-from`` fine-tunes the found network from epoch 0. There is no
    optimizer state and there are no masks: the pruned filters are gone (the thinning plans rebuild
    the smaller shapes), not masked.
    """
    greedy = app.opts.greedy
    info: dict[str, Any] = {
        "target_density": greedy.target_density,
        "pruning_step": greedy.pruning_step,
        "layers": list(layers),
    }
    if record is not None:
        info.update(
            iteration=record.iteration,
            param_name=record.param_name,
            normalized_macs=record.normalized_macs,
            total_macs=record.total_macs,
            densities=list(record.densities),
        )
        extras.update(current_top1=record.top1, current_top5=record.top5, current_loss=record.loss)
    checkpoint = build_checkpoint(
        model=model,
        arch=app.opts.arch,
        dataset=app.dataset,
        epoch=-1,
        extras={**extras, "seed": app.seed, "greedy": info},
    )
    path = app.run_dir / f"{name}_checkpoint.pth.tar"
    atomic_save(checkpoint, path)
    app.saved.append(path)
    return path


def _report(result: GreedyResult, target: float) -> str:
    """What the search did, as a table (its headers avoid ``Top1``: the result line stays the last)."""
    records = result.records
    final = records[-1].total_macs if records else result.dense_macs
    outcome = {
        "target": "target reached",
        "exhausted": "stopped: no layer can lose another filter",
        "max_iterations": "stopped after the iteration limit",
    }[result.stop_reason]
    head = (
        f"Greedy pruning: {len(records)} iteration(s), convolution MACs {result.dense_macs:,} -> {final:,} "
        f"({100 * final / result.dense_macs:.2f}%, target {100 * target:.2f}%): {outcome}"
    )
    rows = [
        (r.iteration, r.param_name, r.channels_removed, f"{r.top1:.3f}", f"{r.normalized_macs:.4f}", r.total_macs)
        for r in records
    ]
    headers = ["iteration", "layer", "channels removed", "valid acc@1", "normalized MACs", "MACs"]
    return head + ("\n" + tabulate(rows, headers=headers, tablefmt="github") if rows else "")


def greedy_search(app: ClassifierApp, *, max_iterations: int | None = None) -> tuple[GreedyResult, DataLoaders]:
    """Run the search on ``app.model`` and write its files; ``app.model`` becomes the final network.

    Returns the search's result and the loaders it used (the final test reads their test split).

    Raises:
        ConfigError: bad ``--greedy*`` values or combinations (before any data is read).
    """
    check_greedy_options(app.opts)
    greedy = app.opts.greedy
    loaders = app._data(test_only=False)
    run = _GreedyRun(app, loaders)
    dataset = None if getattr(app.model, "input_shape", None) else app.dataset
    log.info(
        "Greedy filter pruning to %.2f%% of the convolution MACs, %g of a layer's filters per step; candidates "
        "fine-tuned (%s, %d epoch(s)) on %d training samples, scored on %d samples",
        100 * greedy.target_density,
        greedy.pruning_step,
        greedy.finetuning_policy,
        greedy.ft_epochs,
        len(loaders.train.sampler),
        len(run.scoring.sampler),
    )
    result = greedy_filter_pruning(
        app.model,
        target_density=greedy.target_density,
        pruning_step=greedy.pruning_step,
        evaluate=run.evaluate,
        finetune=run.finetune,
        ft_epochs=greedy.ft_epochs,
        finetuning_policy=greedy.finetuning_policy,
        dataset=dataset,
        on_iteration=run.on_iteration,
        max_iterations=max_iterations,
    )
    app.model = result.model
    return result, loaders


def greedy_pruning_mode(app: ClassifierApp) -> ClassifierResult:
    """``--greedy``: search, save every iteration's network, then test the final one (the result line)
    and save it again as ``greedy_<target density>_checkpoint.pth.tar``."""
    from distiller.apps.classifier import ClassifierResult  # the app module imports this one

    result, loaders = greedy_search(app)
    target = app.opts.greedy.target_density
    test = app.test(loaders)
    last = result.records[-1] if result.records else None
    save_greedy_checkpoint(
        app, app.model, f"greedy_{target}", last, result.layers, test_top1=test.top1, test_top5=test.top5
    )
    return ClassifierResult(test, saved=list(app.saved), reports=[_report(result, target)])
