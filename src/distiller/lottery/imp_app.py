"""``distiller lottery imp`` wiring: model, data, optimizer and files of an IMP run.

The app's builders are reused as they are (``create_model``, ``load_run_data``, ``build_optimizer``,
the determinism helpers), so an IMP run trains exactly like ``distiller classify`` with the same
flags. Every file goes under the run's log dir (DESIGN §7):

``init.pth.tar``                  the initialization (epoch -1)
``rewind.pth.tar``                the weights after ``--rewind-epoch`` epochs (late rewinding only)
``round<r>_ticket.pth.tar``       round r's ticket: rewound weights under the new masks
``round<r>_trained.pth.tar``      after round r's training (round 0 is the dense network)
``lottery.csv``                   ``round,sparsity,top1,top5,loss`` per round (rewritten after each)

Every checkpoint carries its masks in the scheduler state, so any ticket can be retrained again with
``distiller classify --resume-from roundR_ticket.pth.tar --reset-optimizer``, and any trained round can
be made into a ticket with ``distiller lottery ticket``.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from distiller.apps.classifier import select_device
from distiller.apps.optimizers import build_optimizer
from distiller.apps.options import ClassifierOptions
from distiller.apps.run_data import load_run_data, model_dataset
from distiller.checkpoint import build_checkpoint
from distiller.checkpoint.save import atomic_save
from distiller.determinism import seed_everything, set_deterministic
from distiller.fileio import atomic_output
from distiller.lottery.imp import IMPConfig, IMPResult, RoundRecord, Snapshot, TrainingSetup, run_imp
from distiller.lottery.pruning import masks_sparsity
from distiller.models import create_model, dataset_for_arch

__all__ = ["CSV_COLUMNS", "IMPOptions", "IMPRun", "run_imp_app", "write_rounds_csv"]

log = logging.getLogger(__name__)

CSV_COLUMNS = ("round", "sparsity", "top1", "top5", "loss")


@dataclass
class IMPOptions:
    """Everything ``distiller lottery imp`` can be asked to do; training defaults are ``classify``'s."""

    arch: str
    config: IMPConfig
    data_dir: str | None = None
    dataset: str | None = None
    batch_size: int = 256
    workers: int = 4
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    validation_split: float = 0.1
    effective_train_size: float = 1.0
    effective_valid_size: float = 1.0
    effective_test_size: float = 1.0
    deterministic: bool = False
    seed: int | None = None
    cpu: bool = False
    gpus: str | None = None
    print_freq: int = 10
    progress: bool = True


@dataclass
class IMPRun:
    """What a run produced: its rounds and the files it wrote."""

    result: IMPResult
    saved: list[Path] = field(default_factory=list)
    prunable_weights: int = 0


def write_rounds_csv(rounds: list[RoundRecord], path: Path) -> None:
    """Write the per-round table atomically (a reader never sees half a file)."""
    with atomic_output(path, "lottery CSV") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for record in rounds:
            writer.writerow(record.csv_row())


class _Saver:
    """Writes each :class:`Snapshot` as a checkpoint under the run dir."""

    def __init__(self, opts: IMPOptions, dataset: str, seed: int, run_dir: Path) -> None:
        self.opts, self.dataset, self.seed, self.run_dir = opts, dataset, seed, run_dir
        self.saved: list[Path] = []

    def file_name(self, snapshot: Snapshot) -> str:
        if snapshot.kind in ("init", "rewind"):
            return f"{snapshot.kind}.pth.tar"
        return f"round{snapshot.round}_{snapshot.kind}.pth.tar"

    def __call__(self, snapshot: Snapshot) -> None:
        config = self.opts.config
        extras = {
            "seed": self.seed,
            "lottery": {
                "kind": snapshot.kind,
                "round": snapshot.round,
                "sparsity": snapshot.sparsity,
                "prune_fraction": config.prune_fraction,
                "rewind_epoch": config.rewind_epoch,
                "strategy": config.strategy,
            },
        }
        if snapshot.test is not None:
            extras.update(current_top1=snapshot.test.top1, current_top5=snapshot.test.top5)
        checkpoint = build_checkpoint(
            model=snapshot.model,
            arch=self.opts.arch,
            dataset=self.dataset,
            epoch=snapshot.epoch,
            scheduler_state=snapshot.scheduler.state_dict(),
            extras=extras,
        )
        path = self.run_dir / self.file_name(snapshot)
        atomic_save(checkpoint, path)
        log.debug("Saved: %s", path)
        self.saved.append(path)


def _setup(opts: IMPOptions, dataset: str, seed: int, deterministic: bool) -> TrainingSetup:
    device = select_device(ClassifierOptions(cpu=opts.cpu, gpus=opts.gpus))
    model = create_model(opts.arch, model_dataset(dataset), device=device)
    loaders = load_run_data(opts, dataset, model, batch_size=opts.batch_size, deterministic=deterministic, seed=seed)

    def make_optimizer(m: nn.Module):
        return build_optimizer(opts.optimizer, m.parameters(), opts.lr, opts.momentum, opts.weight_decay)

    return TrainingSetup(
        model=model,
        loaders=loaders,
        criterion=nn.CrossEntropyLoss().to(device),
        make_optimizer=make_optimizer,
        device=device,
        seed=seed,
        deterministic=deterministic,
        print_freq=opts.print_freq,
        progress=opts.progress,
    )


def run_imp_app(opts: IMPOptions, run_dir: Path) -> IMPRun:
    """Build the model and data as ``distiller classify`` would, run IMP, and save every round.

    The seed and the model's initialization follow ``classify``: ``--seed`` (0 with
    ``--deterministic``, random otherwise) seeds everything before the model is built.
    """
    deterministic = opts.deterministic
    seed = opts.seed if opts.seed is not None else (0 if deterministic else random.randint(1, 100000))
    if deterministic:
        set_deterministic(True)
    seed_everything(seed)
    dataset = opts.dataset or dataset_for_arch(opts.arch)
    setup = _setup(opts, dataset, seed, deterministic)
    log.info("IMP of %s on %s: seed %d, %s", opts.arch, dataset, seed, opts.config)
    saver = _Saver(opts, dataset, seed, run_dir)
    csv_path = run_dir / "lottery.csv"
    rounds: list[RoundRecord] = []

    def on_round(record: RoundRecord) -> None:
        rounds.append(record)
        write_rounds_csv(rounds, csv_path)

    result = run_imp(setup, opts.config, on_snapshot=saver, on_round=on_round)
    return IMPRun(result, [*saver.saved, csv_path], masks_sparsity(result.masks)[2])
