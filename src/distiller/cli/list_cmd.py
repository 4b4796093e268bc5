"""``distiller list KIND``: the names a schedule or the command line can use."""

from __future__ import annotations

import argparse
import importlib

from distiller.cli.console import emit

# kind -> (module, registry attribute); imported on demand so the command stays fast.
REGISTRIES = {
    "datasets": ("distiller.data", "DATASETS"),
    "pruners": ("distiller.pruning", "PRUNERS"),
    "regularizers": ("distiller.regularization", "REGULARIZERS"),
    "lr_schedulers": ("distiller.scheduler", "LR_SCHEDULERS"),
    "extensions": ("distiller.scheduler", "EXTENSIONS"),
    "distillers": ("distiller.distillation", "DISTILLERS"),
    "optimizers": ("distiller.apps.optimizers", "OPTIMIZERS"),
}


def run(args: argparse.Namespace, argv: list[str]) -> int:
    if args.kind == "models":
        from distiller.models import list_models

        names = list_models(args.dataset)
    else:
        module, attribute = REGISTRIES[args.kind]
        names = getattr(importlib.import_module(module), attribute).names()
    for name in names:
        emit(name)
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    sub = subparsers.add_parser("list", help="list registered models, datasets, pruners, ...")
    sub.add_argument("kind", choices=["models", *REGISTRIES])
    sub.add_argument("--dataset", default=None, help="with `models`: only models built for this dataset")
    sub.set_defaults(handler=run)
