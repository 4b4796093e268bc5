"""The argument parser of ``distiller classify`` / ``compress_classifier.py``.

Flag spellings, aliases and defaults are the original Distiller's, so existing command lines keep
working. argparse lives only in ``distiller.cli``; the parsed namespace is turned into a typed
:class:`~distiller.apps.options.ClassifierOptions` right away.
"""

from __future__ import annotations

import argparse
import logging

from distiller.apps.options import ClassifierOptions
from distiller.cli.amc_args import add_amc_args, amc_options_from_args
from distiller.cli.analysis_args import add_analysis_args, analysis_options_from_args
from distiller.cli.ddp_args import add_ddp_args, ddp_options_from_args
from distiller.cli.earlyexit_args import add_earlyexit_args, earlyexit_options_from_args
from distiller.cli.greedy_args import add_greedy_args, greedy_options_from_args
from distiller.cli.ptq_args import add_ptq_args, ptq_options_from_args


def _fraction_or_count(text: str) -> float:
    """``0.1`` is a fraction of the split, ``500`` is a number of samples (DESIGN §7)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction (<= 1.0) or a sample count, got {text!r}") from None
    if value < 0 or (value > 1 and not value.is_integer()):
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1] or a whole sample count, got {text!r}")
    return value


def _split_fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"the validation split is a fraction in [0, 1), got {text!r}")
    return value


log = logging.getLogger("distiller.cli")

SUMMARY_CHOICES = ["sparsity", "compute", "model", "modules", "png", "png_w_params"]


def build_classify_parser(prog: str = "distiller classify") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Distiller image classification model compression")
    p.add_argument("data", metavar="DATASET_DIR", nargs="?", default=None,
                   help="path to dataset (not needed for digits, fake, or modes that read no data)")
    p.add_argument("--arch", "-a", metavar="ARCH", default="resnet18", type=str.lower,
                   help="model architecture (default: resnet18); `distiller list models` shows them all")
    p.add_argument("--dataset", default=None,
                   help="dataset name (default: inferred from the arch name: cifar10, mnist, imagenet, digits)")
    p.add_argument("-j", "--workers", default=4, type=int, metavar="N",
                   help="number of data loading workers (default: 4)")
    p.add_argument("--epochs", type=int, metavar="N", default=90, help="number of total epochs to run (default: 90)")
    p.add_argument("-b", "--batch-size", default=256, type=int, metavar="N", help="mini-batch size (default: 256)")
    p.add_argument("--print-freq", "-p", default=10, type=int, metavar="N", help="print frequency (default: 10)")
    p.add_argument("--verbose", "-v", action="store_true", help="Emit debug log messages")
    p.add_argument("-e", "--evaluate", action="store_true", help="evaluate model on test set")
    p.add_argument("--deterministic", "--det", action="store_true",
                   help="Ensure deterministic execution for re-producible results.")
    p.add_argument("--seed", type=int, default=None, help="seed the PRNG for CPU, CUDA, numpy, and Python")
    p.add_argument("--gpus", metavar="DEV_ID", default=None,
                   help="Comma-separated list of GPU device IDs to be used (default is to use all available devices)")
    p.add_argument("--cpu", action="store_true", help="Use CPU only (overrides --gpus)")
    p.add_argument("--name", "-n", metavar="NAME", default=None, help="Experiment name")
    p.add_argument("--out-dir", "-o", dest="output_dir", default="logs", help="Path to dump logs and checkpoints")
    p.add_argument("--validation-split", "--valid-size", "--vs", dest="validation_split", type=_split_fraction,
                   default=0.1, help="Portion of training dataset to set aside for validation")
    p.add_argument("--effective-train-size", "--etrs", type=_fraction_or_count, default=1.0,
                   help="Portion (or number of samples) of the training split used in each epoch")
    p.add_argument("--effective-valid-size", "--evs", type=_fraction_or_count, default=1.0,
                   help="Portion (or number of samples) of the validation split used in each epoch")
    p.add_argument("--effective-test-size", "--etes", type=_fraction_or_count, default=1.0,
                   help="Portion (or number of samples) of the test split used")
    p.add_argument("--confusion", action="store_true", help="Display the confusion matrix")
    p.add_argument("--num-best-scores", type=int, default=1,
                   help="number of best scores to track and report (default: 1)")
    p.add_argument("--load-serialized", action="store_true",
                   help="Load a model without DataParallel wrapping it (always the case here; kept for compatibility)")
    p.add_argument("--save-untrained-model", action="store_true",
                   help="Save the randomly-initialized model before training (useful for lottery-ticket method)")
    p.add_argument("--remove-zero-layers", action="store_true",
                   help="Bypass ResNet-CIFAR convolutions whose weights are all zero (the original's "
                        "resnet_cifar_remove_layers), as checkpoints fine-tuned after layer removal expect")
    p.add_argument("--thinnify", action="store_true",
                   help="remove the masked (or all-zero) filters and channels of the --resume-from checkpoint "
                        "and save the smaller model to <log dir>/<checkpoint stem>_thinned.pth.tar")
    p.add_argument("--summary", action="append", choices=SUMMARY_CHOICES, default=None,
                   help="print a summary of the model instead of training (repeatable); reads no data")
    p.add_argument("--export-onnx", metavar="EXPORT_ONNX", nargs="?", const="", default=None,
                   help="export the model to ONNX after any --evaluate/--summary (default file: <log dir>/<arch>.onnx; "
                        "a relative PATH is taken under the log dir); reads no data")
    p.add_argument("--onnx-model", metavar="FILE", default=None,
                   help="with --evaluate: run the test set through this ONNX file in ONNX Runtime (CPU) instead of "
                        "the PyTorch model (same data, transforms and batch size; a final softmax is removed so "
                        "the loss is computed on logits)")
    p.add_argument("--compress", metavar="COMPRESS", nargs="?", default=None,
                   help="compression schedule (YAML) to run; kept in the checkpoint, so --resume-from continues it "
                        "(without a value: no schedule, as the original)")
    p.add_argument("--extras", metavar="EXTRAS", default=None,
                   help="deprecated, ignored with a warning: the original's 'file with extra configuration "
                        "information', which it never read")
    p.add_argument("--masks-sparsity", action="store_true", help="print masks sparsity table at end of each epoch")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="Never show progress bars")
    add_analysis_args(p, _fraction_or_count)
    add_amc_args(p)
    add_earlyexit_args(p)
    add_greedy_args(p)
    add_ddp_args(p)

    opt = p.add_argument_group("Optimizer arguments")
    opt.add_argument("--optimizer", default="sgd", type=str.lower, choices=["sgd", "adam", "adamw"],
                     help="optimizer (default: sgd, as the original)")
    opt.add_argument("--lr", "--learning-rate", default=0.1, type=float, metavar="LR", help="initial learning rate")
    opt.add_argument("--momentum", default=0.9, type=float, metavar="M", help="momentum")
    opt.add_argument("--weight-decay", "--wd", default=1e-4, type=float, metavar="W",
                     help="weight decay (default: 1e-4)")

    res = p.add_argument_group("Resuming arguments")
    load = res.add_mutually_exclusive_group()
    load.add_argument("--resume", dest="deprecated_resume", default="", metavar="PATH",
                      help="deprecated: the same as --resume-from PATH --reset-optimizer (loads the model and its "
                           "schedule, starts at epoch 0 with a new optimizer)")
    load.add_argument("--resume-from", dest="resumed_checkpoint_path", default="", metavar="PATH",
                      help="path to latest checkpoint. Use to resume paused training session.")
    load.add_argument("--exp-load-weights-from", dest="load_model_path", default="", metavar="PATH",
                      help="path to checkpoint to load weights from (excluding other fields) (experimental)")
    res.add_argument("--pretrained", action="store_true", help="use pre-trained model")
    res.add_argument("--pretrained-weights", metavar="FILE", default=None,
                     help="use pre-trained weights from a local file (implies --pretrained; works offline)")
    res.add_argument("--reset-optimizer", action="store_true",
                     help="Flag to override optimizer if resumed from checkpoint. This will reset epochs count.")
    kd = p.add_argument_group("Knowledge Distillation Training Arguments")
    kd.add_argument("--kd-teacher", metavar="ARCH", default=None, help="Model architecture for teacher model")
    kd.add_argument("--kd-pretrained", action="store_true", help="Use pre-trained model for teacher")
    kd.add_argument("--kd-resume", metavar="PATH", default="",
                    help="Path to checkpoint from which to load teacher weights")
    kd.add_argument("--kd-temperature", "--kd-temp", dest="kd_temp", type=float, default=1.0, metavar="TEMP",
                    help="Knowledge distillation softmax temperature")
    kd.add_argument("--kd-distill-wt", "--kd-dw", type=float, default=0.5, metavar="WEIGHT",
                    help="Weight for distillation loss (student vs. teacher soft targets)")
    kd.add_argument("--kd-student-wt", "--kd-sw", type=float, default=0.5, metavar="WEIGHT",
                    help="Weight for student vs. labels loss")
    kd.add_argument("--kd-teacher-wt", "--kd-tw", type=float, default=0.0, metavar="WEIGHT",
                    help="Weight for teacher vs. labels loss (trains the teacher alongside)")
    kd.add_argument("--kd-start-epoch", type=int, default=0, metavar="EPOCH_NUM",
                    help="Epoch from which to enable distillation")
    add_ptq_args(p, _fraction_or_count)
    return p


def _deprecated_flags(args: argparse.Namespace) -> None:
    """The original's deprecated ``--resume`` and ``--extras``: accepted, each with a warning."""
    if getattr(args, "deprecated_resume", ""):
        log.warning('The "--resume" flag is deprecated. Please use "--resume-from=%s" instead.', args.deprecated_resume)
        if not args.reset_optimizer:
            log.warning("--resume resets the optimizer (as the original did); with --resume-from, call with "
                        "--reset-optimizer to do the same")
            args.reset_optimizer = True
        args.resumed_checkpoint_path = args.deprecated_resume
        args.deprecated_resume = ""
    if getattr(args, "extras", None):
        log.warning("--extras %s is deprecated and ignored (the original never read it); put the settings in "
                    "the --compress schedule instead", args.extras)
        args.extras = None


def options_from_args(args: argparse.Namespace) -> ClassifierOptions:
    """The typed options of a parsed command line."""
    _deprecated_flags(args)
    return ClassifierOptions(
        arch=args.arch,
        data_dir=args.data,
        dataset=args.dataset,
        workers=args.workers,
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        print_freq=args.print_freq,
        verbose=args.verbose,
        evaluate=args.evaluate,
        deterministic=args.deterministic,
        seed=args.seed,
        gpus=args.gpus,
        cpu=args.cpu,
        name=args.name,
        out_dir=args.output_dir,
        validation_split=args.validation_split,
        effective_train_size=args.effective_train_size,
        effective_valid_size=args.effective_valid_size,
        effective_test_size=args.effective_test_size,
        confusion=args.confusion,
        num_best_scores=args.num_best_scores,
        load_serialized=args.load_serialized,
        resume_from=args.resumed_checkpoint_path or None,
        exp_load_weights_from=args.load_model_path or None,
        pretrained=args.pretrained,
        pretrained_weights=args.pretrained_weights,
        reset_optimizer=args.reset_optimizer,
        save_untrained_model=args.save_untrained_model,
        remove_zero_layers=args.remove_zero_layers,
        thinnify=args.thinnify,
        summary=list(args.summary or []),
        export_onnx=args.export_onnx,
        onnx_model=args.onnx_model,
        masks_sparsity=args.masks_sparsity,
        compress=args.compress,
        config_files=[args.compress] if args.compress else [],
        kd_teacher=args.kd_teacher.lower() if args.kd_teacher else None,
        kd_pretrained=args.kd_pretrained,
        kd_resume=args.kd_resume or None,
        kd_temperature=args.kd_temp,
        kd_distill_wt=args.kd_distill_wt,
        kd_student_wt=args.kd_student_wt,
        kd_teacher_wt=args.kd_teacher_wt,
        kd_start_epoch=args.kd_start_epoch,
        progress=args.progress,
        quant=ptq_options_from_args(args),
        analysis=analysis_options_from_args(args),
        earlyexit=earlyexit_options_from_args(args),
        greedy=greedy_options_from_args(args),
        amc=amc_options_from_args(args),
        ddp=ddp_options_from_args(args),
    )
