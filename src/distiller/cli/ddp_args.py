"""The ``--ddp-*`` flags of ``distiller classify`` and the console of the ranks other than 0."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distiller.apps.ddp_options import DDPOptions
from distiller.distributed.process_group import BACKENDS, DEFAULT_TIMEOUT_S


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"the timeout must be positive, got {text!r}")
    return value


def add_ddp_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Distributed data-parallel (launch with torchrun; see docs/guides/distributed.md)"
    )
    group.add_argument(
        "--ddp-timeout",
        type=_positive_seconds,
        default=DEFAULT_TIMEOUT_S,
        metavar="SECONDS",
        help="seconds a rank waits for the others in a collective operation before the job fails "
        f"(default: {DEFAULT_TIMEOUT_S:g})",
    )
    group.add_argument(
        "--ddp-backend",
        choices=BACKENDS,
        default="auto",
        help="process-group backend (default: auto = nccl on GPUs, gloo on CPUs)",
    )


def ddp_options_from_args(args: argparse.Namespace) -> DDPOptions:
    return DDPOptions(timeout=args.ddp_timeout, backend=args.ddp_backend)


def configure_worker_logging(rank: int, world_size: int) -> None:
    """Ranks other than 0 print only warnings and errors, on stderr, tagged with their rank.

    Rank 0 alone logs the run (console, log file, CSV, TensorBoard) and prints the result line; the
    others would only repeat it. Their warnings and errors still matter: a failing rank's message must
    reach the user, who otherwise sees only the other ranks timing out.
    """
    root = logging.getLogger("distiller")
    root.setLevel(logging.WARNING)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"[rank {rank}/{world_size}] %(levelname)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False


def run_worker_rank(opts: Any, ctx: Any, run_classifier: Callable[[Any, Path], Any]) -> None:
    """Run the app on a rank other than 0: quiet console, and a private scratch folder as its log dir.

    The rank computes everything rank 0 computes (collective operations need all ranks) but owns no
    output: its run folder is temporary, deleted at the end, so nothing it might write can clobber
    rank 0's log dir, checkpoints or reports.
    """
    configure_worker_logging(ctx.rank, ctx.world_size)
    quiet = dataclasses.replace(opts, progress=False)  # one progress bar per job: rank 0's
    with tempfile.TemporaryDirectory(prefix=f"distiller-rank{ctx.rank}-") as scratch:
        run_classifier(quiet, Path(scratch))
