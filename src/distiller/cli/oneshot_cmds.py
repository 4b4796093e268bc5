"""One-shot subcommands of ``distiller``: ``summary``, ``sensitivity``, ``thin``, ``quantize``, ``export``.

Each is a thin wrapper around ``distiller classify`` in the matching mode: its focused arguments are laid
over the defaults of the classify parser (same ``dest`` names), the mode's flag is set, and the classifier
app runs. So behaviour, files and the output contract (DESIGN §7: ``Log dir:``, ``Saved: PATH``, the
``==> Top1`` result line, the summaries' total lines) are exactly those of the equivalent
``distiller classify`` command line, which each subcommand's help spells out.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from distiller.cli.analysis_args import SENSITIVITY_GROUPS
from distiller.cli.classify_parser import (
    SUMMARY_CHOICES,
    _fraction_or_count,
    _split_fraction,
    build_classify_parser,
    options_from_args,
)
from distiller.cli.ptq_args import add_ptq_args

__all__ = ["SUBCOMMANDS", "add_subcommands"]


def _common(sub: argparse.ArgumentParser, checkpoint: str, data: bool) -> None:
    """The arguments every one-shot subcommand takes (spelled as in ``distiller classify``)."""
    if checkpoint == "required":
        sub.add_argument("resumed_checkpoint_path", metavar="CKPT", help="checkpoint to work on (ours or the "
                         "original Distiller's)")
    else:
        sub.add_argument("resumed_checkpoint_path", metavar="CKPT", nargs="?", default="",
                         help="checkpoint to load first (default: the architecture's random initialization)")
    if data:
        sub.add_argument("data", metavar="DATASET_DIR", nargs="?", default=None,
                         help="path to dataset (not needed for digits or fake)")
    sub.add_argument("--arch", "-a", metavar="ARCH", required=True, type=str.lower, help="model architecture")
    sub.add_argument("--dataset", default=None, help="dataset name (default: inferred from the arch name)")
    sub.add_argument("--out-dir", "-o", dest="output_dir", default="logs",
                     help="where the run's log dir is created (default: logs)")
    sub.add_argument("--name", "-n", metavar="NAME", default=None, help="experiment name (of the log dir)")
    sub.add_argument("--verbose", "-v", action="store_true", help="Emit debug log messages")
    sub.add_argument("--cpu", action="store_true", help="Use CPU only (overrides --gpus)")
    sub.add_argument("--gpus", metavar="DEV_ID", default=None, help="Comma-separated list of GPU device IDs")
    sub.add_argument("--remove-zero-layers", action="store_true",
                     help="Bypass ResNet-CIFAR convolutions whose weights are all zero (as classify)")
    if data:
        sub.add_argument("-j", "--workers", default=4, type=int, metavar="N",
                         help="number of data loading workers (default: 4)")
        sub.add_argument("-b", "--batch-size", default=256, type=int, metavar="N", help="mini-batch size "
                         "(default: 256)")
        sub.add_argument("--seed", type=int, default=None, help="seed the PRNG for CPU, CUDA, numpy, and Python")
        sub.add_argument("--deterministic", "--det", action="store_true", help="deterministic execution")
        sub.add_argument("--validation-split", "--valid-size", "--vs", dest="validation_split", type=_split_fraction,
                         default=0.1, help="Portion of training dataset to set aside for validation")
        sub.add_argument("--effective-valid-size", "--evs", type=_fraction_or_count, default=1.0,
                         help="Portion (or number of samples) of the validation split used")
        sub.add_argument("--effective-test-size", "--etes", type=_fraction_or_count, default=1.0,
                         help="Portion (or number of samples) of the test split used")
        sub.add_argument("--no-progress", dest="progress", action="store_false", help="Never show progress bars")


def _summary_args(sub: argparse.ArgumentParser) -> None:
    _common(sub, checkpoint="optional", data=False)
    sub.add_argument("--kind", "-k", "--summary", dest="summary", action="append", choices=SUMMARY_CHOICES,
                     default=None, help="which summary (repeatable; default: compute)")


def _summary_mode(ns: argparse.Namespace) -> None:
    ns.summary = ns.summary or ["compute"]


def _sensitivity_args(sub: argparse.ArgumentParser) -> None:
    _common(sub, checkpoint="required", data=True)
    sub.add_argument("--sense", dest="sensitivity", choices=SENSITIVITY_GROUPS, default="filter",
                     help="what to prune: element, filter or channel (default: filter)")
    sub.add_argument("--sense-range", dest="sensitivity_range", type=float, nargs=3, default=[0.0, 0.95, 0.05],
                     metavar="SENSITIVITY_RANGE", help="START STOP STEP of the sparsities (np.arange; default: "
                     "0.0 0.95 0.05)")
    sub.add_argument("--sense-groups", dest="sensitivity_groups", action="store_true",
                     help="prune each coupled channel group (from the model graph) as one unit")
    sub.add_argument("--sense-workers", dest="sensitivity_workers", type=int, default=1, metavar="N",
                     help="evaluate the sensitivity levels in N worker processes (default: 1)")


def _thin_args(sub: argparse.ArgumentParser) -> None:
    _common(sub, checkpoint="required", data=True)
    sub.add_argument("-e", "--evaluate", action="store_true", help="evaluate the thinned model on the test set")


def _thin_mode(ns: argparse.Namespace) -> None:
    ns.thinnify = True


def _quantize_args(sub: argparse.ArgumentParser) -> None:
    _common(sub, checkpoint="required", data=True)
    sub.add_argument("--export-onnx", metavar="EXPORT_ONNX", nargs="?", const="", default=None,
                     help="also export the quantized model to ONNX (default file: <log dir>/<arch>.onnx)")
    add_ptq_args(sub, _fraction_or_count)


def _quantize_mode(ns: argparse.Namespace) -> None:
    ns.evaluate = True
    ns.quantize_eval = True


def _export_args(sub: argparse.ArgumentParser) -> None:
    _common(sub, checkpoint="required", data=False)
    sub.add_argument("--output", dest="export_onnx", metavar="PATH", default="",
                     help="the ONNX file (default: <log dir>/<arch>.onnx; a relative PATH is taken under the log dir)")


# name -> (help, the equivalent classify flags, arguments, mode)
SUBCOMMANDS: dict[str, tuple[str, str, Callable, Callable | None]] = {
    "summary": ("print model summaries (sparsity, compute, model, modules, png) of an architecture or checkpoint",
                "classify -a ARCH [--resume-from CKPT] --summary KIND", _summary_args, _summary_mode),
    "sensitivity": ("pruning-sensitivity analysis of a checkpoint (writes sensitivity.csv and .png)",
                    "classify -a ARCH --resume-from CKPT --sense GROUP", _sensitivity_args, None),
    "thin": ("remove a checkpoint's pruned filters and channels and save the smaller model",
             "classify -a ARCH --resume-from CKPT --thinnify", _thin_args, _thin_mode),
    "quantize": ("post-training quantization of a checkpoint: calibrate, evaluate, save the quantized checkpoint",
                 "classify -a ARCH --resume-from CKPT --evaluate --quantize-eval [--qe-* ...]", _quantize_args,
                 _quantize_mode),
    "export": ("export a checkpoint's model to ONNX",
               "classify -a ARCH --resume-from CKPT --export-onnx [PATH]", _export_args, None),
}


def classify_options(args: argparse.Namespace, mode: Callable | None):
    """The ``ClassifierOptions`` of a subcommand: its arguments over the classify parser's defaults."""
    ns = build_classify_parser().parse_args([])
    for key, value in vars(args).items():
        if hasattr(ns, key):
            setattr(ns, key, value)
    if mode is not None:
        mode(ns)
    return options_from_args(ns)


def _handler(mode: Callable | None):
    def run(args: argparse.Namespace, argv: list[str]) -> int:
        from distiller.apps.classifier import run_classifier
        from distiller.cli.classify import report_result, start_run

        opts = classify_options(args, mode)
        run_dir = start_run(opts, argv)
        report_result(opts, run_classifier(opts, run_dir))
        return 0

    return run


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    for name, (help_text, equivalent, add_args, mode) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text,
                                    description=f"{help_text[0].upper()}{help_text[1:]}. The same as "
                                                f"`distiller {equivalent}` (same files and output).")
        add_args(sub)
        sub.set_defaults(handler=_handler(mode))


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """The ``SUBCOMMANDS`` protocol of :mod:`distiller.cli.main` (one module adds five commands)."""
    add_subcommands(subparsers)
