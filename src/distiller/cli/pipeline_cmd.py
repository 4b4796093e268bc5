"""``distiller pipeline``: the whole compression pipeline in one command (``make demo``).

    distiller pipeline [--dataset digits] [--epochs N] [--threads T] [-o logs]
    distiller pipeline --dataset cifar10 --data-dir PATH [--arch resnet20_cifar]

Trains the model, prunes it with a structured AGP schedule, thins it, fine-tunes it, quantizes it to
int8 and exports ONNX files, then prints one table (accuracy, parameters, MACs, file size, latency in
PyTorch and ONNX Runtime) with the sparsity summary of the pruned model, and the result line of the
deployed int8 model. Everything is written under the run's log dir.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distiller.apps.run_dir import create_run_dir, record_environment
from distiller.cli.classify_parser import _fraction_or_count, _split_fraction
from distiller.cli.console import configure_logging, emit


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from distiller.pipeline import PipelineConfig, render_stage_times, render_table, run_pipeline
    from distiller.summary import render_sparsity_summary

    config = PipelineConfig(
        dataset=args.dataset,
        data_dir=args.data_dir,
        arch=args.arch,
        schedule=args.schedule,
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        finetune_epochs=args.finetune_epochs,
        qat_epochs=args.qat_epochs,
        lr=args.lr,
        finetune_lr=args.finetune_lr,
        batch_size=args.train_batch_size,
        quantization=args.quantization,
        calibration_size=args.calibration_size,
        latency_batch=args.batch_size,
        threads=args.threads,
        latency_rounds=args.latency_rounds,
        latency_repeats=args.latency_repeats,
        seed=args.seed,
        validation_split=args.validation_split,
        train_size=args.train_size,
        valid_size=args.valid_size,
        test_size=args.test_size,
        workers=args.workers,
    ).resolved()  # settings are checked before a log dir is created
    run_dir = create_run_dir(args.out_dir, args.name or f"pipeline_{config.dataset}")
    configure_logging(args.verbose, run_dir / "pipeline.log")
    emit(f"Log dir: {run_dir}")
    record_environment(run_dir, [Path(config.schedule)], argv)
    report = run_pipeline(config, run_dir)
    for path in report.saved:
        emit(f"Saved: {path}")
    emit()
    emit(f"Compression pipeline of {config.arch} on {config.dataset}:")
    emit(render_table(report))
    emit()
    emit(render_sparsity_summary(report.sparsity, title="Sparsity of the pruned model (before thinning):"))
    emit()
    emit(render_stage_times(report))
    emit(f"Test (int8, ONNX Runtime): {report.final.num_samples} samples")
    emit(report.final.result_line())
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "pipeline",
        help="train, prune (structured AGP), thin, fine-tune, quantize to int8 and export ONNX; print one table",
        description="Run the whole compression pipeline on the embedded digits (the default; `make demo`) or on "
        "CIFAR-10: dense training, structured AGP pruning under a YAML schedule, thinning, fine-tuning, int8 "
        "quantization (post-training, or quantization-aware training where it does better) and ONNX export. Prints "
        "accuracy, parameters, MACs, ONNX file size and latency (PyTorch, ONNX Runtime FP32 and int8) of the dense, "
        "thinned and int8 models, and the sparsity summary. Options left out take the dataset's defaults.",
    )
    p.add_argument(
        "--dataset",
        default="digits",
        type=str.lower,
        help="digits (embedded, no download; default) or cifar10 (needs --data-dir)",
    )
    p.add_argument("--data-dir", default=None, metavar="PATH", help="the dataset folder (cifar10)")
    p.add_argument(
        "--arch",
        "-a",
        default=None,
        type=str.lower,
        help="model architecture (default: convnet_digits for digits, resnet20_cifar for cifar10)",
    )
    p.add_argument(
        "--schedule",
        default=None,
        metavar="SCHEDULE.yaml",
        help="compression schedule of the pruning stage (default: the structured AGP schedule shipped "
        "in distiller/pipeline/schedules/ for the dataset)",
    )
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="dense training epochs")
    p.add_argument(
        "--prune-epochs",
        type=int,
        default=None,
        metavar="N",
        help="epochs of the pruning stage (at least the schedule's pruning window)",
    )
    p.add_argument("--finetune-epochs", type=int, default=None, metavar="N", help="fine-tuning epochs after thinning")
    p.add_argument("--qat-epochs", type=int, default=None, metavar="N", help="quantization-aware training epochs")
    p.add_argument("--lr", type=float, default=None, metavar="LR", help="learning rate of dense training (cosine)")
    p.add_argument(
        "--finetune-lr",
        type=float,
        default=None,
        metavar="LR",
        help="learning rate of pruning and fine-tuning (QAT uses a tenth of it)",
    )
    p.add_argument("--train-batch-size", type=int, default=None, metavar="N", help="training mini-batch size")
    p.add_argument(
        "--quantization",
        default="auto",
        choices=["auto", "ptq", "qat"],
        help="int8 by post-training quantization (ptq), quantization-aware training (qat), or PTQ "
        "then QAT where PTQ loses more than half a point of validation top-1 (auto; default)",
    )
    p.add_argument(
        "--calibration-size",
        type=_fraction_or_count,
        default=None,
        metavar="N",
        help="training images (count, or fraction <= 1) that calibrate the int8 ranges (default: 1000)",
    )
    p.add_argument(
        "--batch-size",
        "-b",
        type=int,
        default=256,
        metavar="N",
        help="batch size of the latency measurements (default: 256)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="intra-op threads of PyTorch (training and timing) and ONNX Runtime (default: 1 for digits, "
        "all cores for cifar10)",
    )
    p.add_argument(
        "--latency-rounds",
        type=int,
        default=5,
        metavar="R",
        help="rounds of timing blocks; the latency is the median over all (default: 5)",
    )
    p.add_argument(
        "--latency-repeats", type=int, default=10, metavar="N", help="timed runs per model and round (default: 10)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of initialization, data order and subsets (default: 0)")
    p.add_argument(
        "--validation-split",
        "--vs",
        type=_split_fraction,
        default=0.1,
        help="share of the training split held out for validation (default: 0.1)",
    )
    p.add_argument(
        "--train-size",
        type=_fraction_or_count,
        default=1.0,
        help="portion (or number of samples) of the training split used in each epoch",
    )
    p.add_argument(
        "--valid-size",
        type=_fraction_or_count,
        default=1.0,
        help="portion (or number of samples) of the validation split used",
    )
    p.add_argument(
        "--test-size",
        type=_fraction_or_count,
        default=1.0,
        help="portion (or number of samples) of the test split used",
    )
    p.add_argument("-j", "--workers", type=int, default=0, metavar="N", help="data loading workers (default: 0)")
    p.add_argument("--out-dir", "-o", default="logs", help="folder in which the run's log dir is created")
    p.add_argument("--name", "-n", default=None, help="name of the log dir (default: pipeline_<dataset>)")
    p.add_argument("--verbose", "-v", action="store_true", help="emit debug log messages")
    p.set_defaults(handler=run)
