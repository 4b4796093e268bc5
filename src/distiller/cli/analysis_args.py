"""The analysis flags (``--sense*``, ``--act-stats``, ``--act-hist``, ``--param-hist``), spelled as in the original."""

from __future__ import annotations

import argparse

from distiller.apps.analysis_options import AnalysisOptions

SENSITIVITY_GROUPS = ["element", "filter", "channel"]
ACT_STATS_PHASES = ["train", "valid", "test"]


def _phase(text: str) -> str:
    value = text.lower()
    if value not in ACT_STATS_PHASES:
        raise argparse.ArgumentTypeError(f"invalid phase {text!r}: choose from {', '.join(ACT_STATS_PHASES)}")
    return value


def add_analysis_args(parser: argparse.ArgumentParser, fraction_or_count) -> None:  # noqa: ANN001
    """Add the analysis flags to ``parser`` (its main group, as the original had them)."""
    parser.add_argument("--activation-stats", "--act-stats", nargs="+", metavar="PHASE", type=_phase, default=[],
                        help="collect activation statistics on phases: train, valid, and/or test "
                             "(WARNING: this slows down training)")
    parser.add_argument("--activation-histograms", "--act-hist", type=fraction_or_count, default=None,
                        metavar="PORTION_OF_TEST_SET",
                        help="Run the model in evaluation mode on a portion (fraction, or sample count) of a fixed "
                             "training subset and generate activation histograms. NOTE: This slows down evaluation")
    parser.add_argument("--param-hist", dest="log_params_histograms", action="store_true", default=False,
                        help="log the parameter tensors histograms to file (WARNING: this can use significant "
                             "disk space)")
    parser.add_argument("--no-tensorboard", dest="tensorboard", action="store_false",
                        help="do not write TensorBoard event files in the log dir")
    parser.add_argument("--sense", dest="sensitivity", choices=SENSITIVITY_GROUPS, default=None,
                        help="test the sensitivity of layers to pruning")
    parser.add_argument("--sense-range", dest="sensitivity_range", type=float, nargs=3, default=[0.0, 0.95, 0.05],
                        metavar="SENSITIVITY_RANGE",
                        help="an optional parameter for sensitivity testing providing the range of sparsities to "
                             "test. This is equivalent to creating sensitivities = np.arange(start, stop, step)")
    parser.add_argument("--sense-groups", dest="sensitivity_groups", action="store_true",
                        help="with --sense filter/channel: prune each coupled channel group (from the model graph) "
                             "as one unit, so a residual stage is pruned consistently")
    parser.add_argument("--sense-workers", dest="sensitivity_workers", type=int, default=1, metavar="N",
                        help="evaluate the sensitivity levels in N worker processes (default: 1, in-process)")


def analysis_options_from_args(args: argparse.Namespace) -> AnalysisOptions:
    return AnalysisOptions(
        sensitivity=args.sensitivity,
        sensitivity_range=tuple(args.sensitivity_range),
        sensitivity_groups=args.sensitivity_groups,
        sensitivity_workers=args.sensitivity_workers,
        activation_stats=list(dict.fromkeys(args.activation_stats)),
        activation_histograms=args.activation_histograms,
        param_hist=args.log_params_histograms,
        tensorboard=args.tensorboard,
    )
