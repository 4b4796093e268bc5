"""The ``distiller`` command: subcommands share the library functions.

A :class:`~distiller.errors.DistillerError` (bad input) is shown as a one-paragraph message without
a traceback, and the exit status is 2. ``--debug`` (or ``DISTILLER_DEBUG=1``) shows tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys

import distiller
from distiller.apps.run_dir import resolve_latest_links
from distiller.cli import (
    classify,
    completion_cmd,
    inspect_cmd,
    list_cmd,
    lottery_cmd,
    oneshot_cmds,
    pipeline_cmd,
    sensitivity_schedule_cmd,
    validate_cmd,
)
from distiller.errors import DistillerError

SUBCOMMANDS = (
    classify,
    validate_cmd,
    inspect_cmd,
    list_cmd,
    lottery_cmd,
    sensitivity_schedule_cmd,
    oneshot_cmds,
    completion_cmd,
    pipeline_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distiller", description="Neural-network compression research on PyTorch.")
    parser.add_argument("--version", action="version", version=f"distiller-nn {distiller.__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        module.add_subcommand(subparsers)
    return parser


def run_guarded(handler, args: argparse.Namespace, argv: list[str], debug: bool) -> int:
    """Run a command; turn user errors into a message and an exit status instead of a traceback."""
    resolve_latest_links(args)  # before the run moves `latest_log_dir`
    try:
        return handler(args, argv)
    except DistillerError as err:
        if debug:
            raise
        message = " ".join(str(err).split())
        print(f"distiller: error: {message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("distiller: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("DISTILLER_DEBUG") == "1"
    return run_guarded(args.handler, args, ["distiller", *argv], debug)


if __name__ == "__main__":
    sys.exit(main())
