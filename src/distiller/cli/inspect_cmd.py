"""``distiller inspect CKPT``: what a checkpoint holds (the original's inspect_ckpt.py)."""

from __future__ import annotations

import argparse

from distiller.checkpoint import describe_checkpoint
from distiller.cli.console import emit


def run(args: argparse.Namespace, argv: list[str]) -> int:
    emit(str(describe_checkpoint(args.checkpoint)))
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser("inspect", help="print a checkpoint's contents")
    sub.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (ours or the original Distiller's)")
    sub.set_defaults(handler=run)
