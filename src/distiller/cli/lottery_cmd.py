"""``distiller lottery``: lottery tickets (Frankle & Carbin) from checkpoints, or by iterative magnitude pruning.

Two actions::

    distiller lottery ticket --trained PRUNED.pth.tar --init UNTRAINED.pth.tar [--rewind EPOCH_K.pth.tar]
                             [-o TICKET.pth.tar | --out-dir DIR]
    distiller lottery imp -a ARCH --rounds R --prune-fraction P --epochs-per-round E [--rewind-epoch K]
                          [training flags of classify] [DATASET_DIR]

``ticket`` writes a checkpoint that ``distiller classify -a ARCH --resume-from TICKET --reset-optimizer
--epochs N`` retrains with its masks fixed. ``imp`` runs the whole train → prune → rewind → retrain
cycle and ends with the result line of its last round.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tabulate import tabulate

from distiller.apps.run_dir import create_run_dir, record_environment
from distiller.cli.classify_parser import _fraction_or_count, _split_fraction
from distiller.cli.console import configure_logging, emit

log = logging.getLogger("distiller.cli")


def _start_run(out_dir: str, name: str, verbose: bool, argv: list[str]) -> Path:
    run_dir = create_run_dir(out_dir, name)
    configure_logging(verbose, run_dir / f"{name}.log")
    emit(f"Log dir: {run_dir}")
    record_environment(run_dir, [], argv)
    return run_dir


def run_ticket(args: argparse.Namespace, argv: list[str]) -> int:
    from distiller.errors import ConfigError
    from distiller.lottery import save_ticket, ticket_from_checkpoints

    if args.init is None and args.rewind is None:
        raise ConfigError(
            "distiller lottery ticket needs the weights to rewind to: --init UNTRAINED.pth.tar (the "
            "initialization) or --rewind EPOCH_K.pth.tar (late rewinding)."
        )
    configure_logging(args.verbose)
    made = ticket_from_checkpoints(args.trained, args.init, args.rewind, arch=args.arch)
    if args.output:
        path = Path(args.output)
    else:
        run_dir = _start_run(args.out_dir, args.name or "lottery_ticket", args.verbose, argv)
        stem = Path(args.trained).name.removesuffix(".pth.tar").removesuffix(".pth")
        path = run_dir / f"{stem}_ticket.pth.tar"
    save_ticket(made.checkpoint, path, inputs=(args.trained, args.init, args.rewind))
    pruned, total = _counts(made.ticket.masks)
    source = "the initialization" if args.rewind is None else f"epoch {made.epoch} ({args.rewind})"
    emit(f"Ticket of {made.arch}: weights of {source}, masks from the {made.masks_source}")
    emit(f"Saved: {path}")
    emit(f"Ticket sparsity: {made.ticket.sparsity:.2f} ({pruned:,} of {total:,} masked weights pruned)")
    return 0


def _counts(masks) -> tuple[int, int]:
    from distiller.lottery import masks_sparsity

    _, pruned, total = masks_sparsity(masks)
    return pruned, total


def rounds_table(rounds) -> str:
    """Per-round results (headers avoid the word ``Top1``: the result line is the last that has it)."""
    rows = [
        (r.round, f"{r.sparsity:.2f}", f"{r.test.top1:.3f}", f"{r.test.top5:.3f}", f"{r.test.loss:.4f}", len(r.epochs))
        for r in rounds
    ]
    headers = ["round", "sparsity (%)", "test acc@1", "test acc@5", "test loss", "epochs"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def run_imp(args: argparse.Namespace, argv: list[str]) -> int:
    from distiller.lottery import IMPConfig
    from distiller.lottery.imp_app import IMPOptions, run_imp_app

    config = IMPConfig(
        rounds=args.rounds,
        prune_fraction=args.prune_fraction,
        epochs_per_round=args.epochs_per_round,
        rewind_epoch=args.rewind_epoch,
        strategy=args.strategy,
        last_layer_rate=args.last_layer_rate,
    )
    opts = IMPOptions(
        arch=args.arch,
        config=config,
        data_dir=args.data,
        dataset=args.dataset,
        batch_size=args.batch_size,
        workers=args.workers,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        validation_split=args.validation_split,
        effective_train_size=args.effective_train_size,
        effective_valid_size=args.effective_valid_size,
        effective_test_size=args.effective_test_size,
        deterministic=args.deterministic,
        seed=args.seed,
        cpu=args.cpu,
        gpus=args.gpus,
        print_freq=args.print_freq,
        progress=args.progress,
    )
    run_dir = _start_run(args.out_dir, args.name or "lottery", args.verbose, argv)
    run = run_imp_app(opts, run_dir)
    for path in run.saved:
        emit(f"Saved: {path}")
    emit()
    emit(rounds_table(run.result.rounds))
    emit()
    final = run.result.final
    emit(f"Ticket sparsity: {final.sparsity:.2f} (round {final.round}, {run.prunable_weights:,} conv/linear weights)")
    emit(f"Test: {final.test.num_samples} samples")
    emit(final.test.result_line())
    return 0


def _add_ticket_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "ticket",
        help="rewind a trained, pruned checkpoint to its initialization (or epoch k) under its masks",
        description="Write the lottery ticket of a pruned checkpoint: the initial weights (or, with --rewind, "
        "those of an early checkpoint) under the trained checkpoint's masks (its scheduler masks, or the zeros of "
        "its conv/linear weights). Retrain it with: distiller classify -a ARCH --resume-from TICKET "
        "--reset-optimizer --epochs N [DATASET_DIR].",
    )
    p.add_argument("--trained", required=True, metavar="PRUNED.pth.tar", help="the trained, pruned checkpoint")
    p.add_argument("--init", default=None, metavar="UNTRAINED.pth.tar",
                   help="the initialization of the same run (distiller classify --save-untrained-model)")
    p.add_argument("--rewind", default=None, metavar="EPOCH_K.pth.tar",
                   help="late rewinding: take the weights from this checkpoint of the same run (after epoch k) "
                        "instead of the initialization; --init, if also given, is only checked")
    p.add_argument("--arch", "-a", default=None, type=str.lower,
                   help="architecture, only for checkpoints that do not record it (bare state dicts)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--output", "-o", default=None, metavar="TICKET.pth.tar",
                       help="the ticket file to write (default: <trained stem>_ticket.pth.tar in a new log dir)")
    where.add_argument("--out-dir", default="logs", help="folder of the log dir created when -o is not given")
    p.add_argument("--name", "-n", default=None, help="name of the log dir (default: lottery_ticket)")
    p.add_argument("--verbose", "-v", action="store_true", help="emit debug log messages")
    p.set_defaults(handler=run_ticket)


def _add_imp_parser(actions: argparse._SubParsersAction) -> None:
    p = actions.add_parser(
        "imp",
        help="iterative magnitude pruning: train, prune, rewind, retrain for several rounds",
        description="Find a lottery ticket by iterative magnitude pruning: round 0 trains the dense network; each "
        "round then prunes --prune-fraction of the remaining conv/linear weights by magnitude, rewinds the others to "
        "the initialization (or to the weights after --rewind-epoch epochs) and retrains with the masks fixed. "
        "Writes each round's ticket and trained checkpoint and lottery.csv under the run's log dir.",
    )
    p.add_argument("data", metavar="DATASET_DIR", nargs="?", default=None,
                   help="path to the dataset (not needed for digits or fake)")
    p.add_argument("--arch", "-a", required=True, type=str.lower, metavar="ARCH", help="model architecture")
    p.add_argument("--dataset", default=None, help="dataset name (default: inferred from the arch name)")
    p.add_argument("--rounds", type=int, required=True, metavar="R", help="pruning rounds after the dense round")
    p.add_argument("--prune-fraction", type=float, default=0.2, metavar="P",
                   help="share of the remaining weights pruned each round (default: 0.2)")
    p.add_argument("--epochs-per-round", type=int, required=True, metavar="E",
                   help="training epochs of the dense round; retraining runs epochs K..E-1")
    p.add_argument("--rewind-epoch", type=int, default=0, metavar="K",
                   help="rewind to the weights after K epochs of dense training (default: 0, the initialization)")
    p.add_argument("--strategy", choices=["global", "layerwise"], default="global",
                   help="rank weights across all layers (default) or prune each layer by the same fraction")
    p.add_argument("--last-layer-rate", type=float, default=1.0, metavar="X",
                   help="prune the output layer at X times the rate (Frankle & Carbin: 0.5; default: 1.0)")
    p.add_argument("-j", "--workers", default=4, type=int, metavar="N", help="data loading workers (default: 4)")
    p.add_argument("-b", "--batch-size", default=256, type=int, metavar="N", help="mini-batch size (default: 256)")
    p.add_argument("--optimizer", default="sgd", type=str.lower, choices=["sgd", "adam", "adamw"],
                   help="optimizer, new for each round (default: sgd)")
    p.add_argument("--lr", "--learning-rate", default=0.1, type=float, metavar="LR", help="learning rate")
    p.add_argument("--momentum", default=0.9, type=float, metavar="M", help="momentum")
    p.add_argument("--weight-decay", "--wd", default=1e-4, type=float, metavar="W", help="weight decay")
    p.add_argument("--validation-split", "--valid-size", "--vs", dest="validation_split", type=_split_fraction,
                   default=0.1, help="portion of the training split set aside for validation")
    p.add_argument("--effective-train-size", "--etrs", type=_fraction_or_count, default=1.0,
                   help="portion (or number of samples) of the training split used in each epoch")
    p.add_argument("--effective-valid-size", "--evs", type=_fraction_or_count, default=1.0,
                   help="portion (or number of samples) of the validation split used")
    p.add_argument("--effective-test-size", "--etes", type=_fraction_or_count, default=1.0,
                   help="portion (or number of samples) of the test split used")
    p.add_argument("--deterministic", "--det", action="store_true", help="reproducible run (seed 0 by default)")
    p.add_argument("--seed", type=int, default=None, help="seed of the initialization and the data order")
    p.add_argument("--cpu", action="store_true", help="use the CPU even where CUDA is available")
    p.add_argument("--gpus", metavar="DEV_ID", default=None, help="GPU to use (the first id of the list)")
    p.add_argument("--out-dir", "-o", default="logs", help="folder in which the run's log dir is created")
    p.add_argument("--name", "-n", default=None, help="name of the log dir (default: lottery)")
    p.add_argument("--print-freq", "-p", default=10, type=int, metavar="N", help="progress logging frequency")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress bars")
    p.add_argument("--verbose", "-v", action="store_true", help="emit debug log messages")
    p.set_defaults(handler=run_imp)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "lottery",
        help="lottery tickets: rewind a pruned checkpoint, or iterative magnitude pruning",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)
    _add_ticket_parser(actions)
    _add_imp_parser(actions)
