"""``distiller validate SCHEDULE.yaml -a ARCH``: check a schedule against a model without training."""

from __future__ import annotations

import argparse

from distiller.cli.console import emit


def run(args: argparse.Namespace, argv: list[str]) -> int:
    from distiller.config import validate_schedule
    from distiller.models import create_model

    model = create_model(args.arch, args.dataset)
    plan = validate_schedule(args.schedule, model)
    emit(plan.describe(args.epochs))
    emit(f"Schedule {args.schedule} is valid for {args.arch}.")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser(
        "validate", help="check a compression schedule against an architecture and print the resolved plan"
    )
    sub.add_argument("schedule", metavar="SCHEDULE.yaml", help="compression schedule in the original YAML schema")
    sub.add_argument("--arch", "-a", required=True, type=str.lower, help="model architecture")
    sub.add_argument("--dataset", default=None, help="dataset (default: inferred from the arch name)")
    sub.add_argument("--epochs", type=int, default=None, help="show the timeline up to this epoch")
    sub.set_defaults(handler=run)
