"""``distiller list models|datasets``: what can be named on the command line."""

from __future__ import annotations

import argparse

from distiller.cli.console import emit


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.kind == "models":
        from distiller.models import list_models

        names = list_models(args.dataset)
    else:
        from distiller.data import DATASETS

        names = DATASETS.names()
    for name in names:
        emit(name)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser("list", help="list registered models or datasets")
    sub.add_argument("kind", choices=["models", "datasets"])
    sub.add_argument("--dataset", default=None, help="only models built for this dataset")
    sub.set_defaults(handler=run)
