"""The early-exit flags, spelled as in the original (``--earlyexit_lossweights``, ``--earlyexit_thresholds``).

Hyphenated spellings are accepted too. ``--earlyexit-rule`` is new: the original always decided by
the cross-entropy against the label (``ce``); the default here is the label-free softmax entropy.
The list flags take any number of values, so a ``DATASET_DIR`` written right after them would be read
as one: as with the original, put it first or after another flag.
"""

from __future__ import annotations

import argparse

from distiller.apps.earlyexit_options import EarlyExitOptions
from distiller.early_exit.decision import RULES

__all__ = ["add_earlyexit_args", "earlyexit_options_from_args"]


def add_earlyexit_args(parser: argparse.ArgumentParser) -> None:
    """Add the early-exit flags to ``parser`` (its main group, as the original had them)."""
    parser.add_argument("--earlyexit_lossweights", "--earlyexit-lossweights", dest="earlyexit_lossweights",
                        type=float, nargs="*", default=None, metavar="EARLYEXIT_LOSSWEIGHTS",
                        help="List of loss weights for early exits (e.g. --earlyexit_lossweights 0.1 0.3); one per "
                             "exit, summing to less than 1 (the final classifier gets the rest)")
    parser.add_argument("--earlyexit_thresholds", "--earlyexit-thresholds", dest="earlyexit_thresholds",
                        type=float, nargs="*", default=None, metavar="EARLYEXIT_THRESHOLDS",
                        help="List of EarlyExit thresholds (e.g. --earlyexit_thresholds 1.2 0.9); one per exit: a "
                             "sample leaves at the first exit whose score (see --earlyexit-rule) is below it. Put "
                             "DATASET_DIR before these list flags")
    parser.add_argument("--earlyexit-rule", "--earlyexit_rule", dest="earlyexit_rule", choices=RULES,
                        default="entropy",
                        help="how validation decides that a sample exits: 'entropy' (default; softmax entropy in "
                             "nats, label-free, what a deployed model can do) or 'ce' (the original Distiller's "
                             "cross-entropy against the label; for comparing with its numbers only)")


def earlyexit_options_from_args(args: argparse.Namespace) -> EarlyExitOptions:
    return EarlyExitOptions(
        lossweights=list(args.earlyexit_lossweights or []),
        thresholds=list(args.earlyexit_thresholds or []),
        rule=args.earlyexit_rule,
    )
