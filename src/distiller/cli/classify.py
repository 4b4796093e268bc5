"""``distiller classify``: train, evaluate and compress image classifiers."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tabulate import tabulate

from distiller.apps.classifier import ClassifierResult, run_classifier
from distiller.apps.ddp import ddp_session
from distiller.apps.options import ClassifierOptions
from distiller.apps.run_dir import create_run_dir, record_environment
from distiller.cli.classify_parser import build_classify_parser, options_from_args
from distiller.cli.console import configure_logging, emit
from distiller.cli.ddp_args import run_worker_rank

log = logging.getLogger("distiller.cli")


def history_table(result: ClassifierResult) -> str:
    """Per-epoch results as a table (headers avoid the word ``Top1``: the result line is the last)."""
    rows = [
        (r.epoch, f"{r.lr:.5g}", f"{r.train.losses['Overall Loss']:.4f}", f"{r.train.top1:.2f}",
         f"{r.valid.loss:.4f}", f"{r.valid.top1:.2f}", f"{r.valid.top5:.2f}", f"{r.train.seconds:.1f}")
        for r in result.history
    ]
    headers = ["epoch", "lr", "train loss", "train acc@1", "valid loss", "valid acc@1", "valid acc@5", "time (s)"]
    return tabulate(rows, headers=headers, tablefmt="github")


def confusion_table(result: ClassifierResult) -> str:
    matrix = result.test.confusion
    rows = [[i, *row.tolist()] for i, row in enumerate(matrix)]
    return tabulate(rows, headers=["true \\ predicted", *range(matrix.shape[0])], tablefmt="simple")


def start_run(opts: ClassifierOptions, argv: list[str]) -> Path:
    """Create the run's log dir, send the log there, announce it and record the environment."""
    run_dir = create_run_dir(opts.out_dir, opts.name)
    configure_logging(opts.verbose, run_dir / f"{opts.name or run_dir.name}.log")
    emit(f"Log dir: {run_dir}")
    record_environment(run_dir, opts.config_files, argv)
    return run_dir


def report_result(opts: ClassifierOptions, result: ClassifierResult) -> None:
    """Print what a run saved, its reports, history and final result line (DESIGN §7)."""
    for path in result.saved:
        emit(f"Saved: {path}")
    for report in result.reports:
        emit(report)
    if result.history:
        emit()
        emit(history_table(result))
        emit()
    if result.best:
        emit(result.best)
    if result.test is not None:
        if opts.confusion and result.test.confusion is not None:
            emit(confusion_table(result))
        emit(f"Test: {result.test.num_samples} samples")
        emit(result.test.result_line())


def run(args: argparse.Namespace, argv: list[str]) -> int:
    opts = options_from_args(args)
    with ddp_session(opts) as ctx:  # None unless torchrun started this process with others
        if ctx is not None and not ctx.is_main:
            run_worker_rank(opts, ctx, run_classifier)
            return 0
        run_dir = start_run(opts, argv)
        report_result(opts, run_classifier(opts, run_dir))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parent = build_classify_parser()
    sub = subparsers.add_parser(
        "classify", parents=[parent], add_help=False, help="train / evaluate / compress an image classifier",
        description=parent.description,
    )
    sub.set_defaults(handler=run)
