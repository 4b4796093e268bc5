"""The greedy filter pruning flags (``--greedy*``), spelled, defaulted and documented as in the original."""

from __future__ import annotations

import argparse

from distiller.apps.greedy_options import GreedyOptions
from distiller.apps.search_modes import GREEDY
from distiller.cli.search_mode_args import reject_other_modes

__all__ = ["add_greedy_args", "greedy_options_from_args"]

FINETUNING_POLICIES = ["constant", "linear-grow"]


def add_greedy_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--greedy`` to ``parser``'s main group and the rest to a "Greedy Pruning" group, as the original."""
    parser.add_argument("--greedy", dest="greedy", action="store_true", help="greedy filter pruning")
    group = parser.add_argument_group("Greedy Pruning")
    group.add_argument("--greedy-ft-epochs", type=int, default=1,
                       help="number of epochs to fine-tune each discovered network")
    group.add_argument("--greedy-target-density", type=float,
                       help="target density of the network we are seeking")
    group.add_argument("--greedy-pruning-step", type=float, default=0.10,
                       help="size of each pruning step (as a fraction in [0..1])")
    group.add_argument("--greedy-finetuning-policy", choices=FINETUNING_POLICIES, default="constant",
                       help="policy used for determining how long to fine-tune")


def greedy_options_from_args(args: argparse.Namespace) -> GreedyOptions:
    """The typed options; with ``--greedy``, also checks the values and the other modes asked for.

    The combination is checked here, on the command line, because modes that come before greedy in
    the app's dispatch table would otherwise run silently instead of it.

    Raises:
        ConfigError: a value out of range, or ``--greedy`` with a mode it does not combine with.
    """
    opts = GreedyOptions(
        enabled=args.greedy,
        ft_epochs=args.greedy_ft_epochs,
        target_density=args.greedy_target_density,
        pruning_step=args.greedy_pruning_step,
        finetuning_policy=args.greedy_finetuning_policy,
    )
    if opts.enabled:
        opts.validate()
        reject_other_modes(args, GREEDY)
    return opts
