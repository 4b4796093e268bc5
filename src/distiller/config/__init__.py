"""Compression schedules from YAML, from a dict, or validated without training.

Three ways to configure a :class:`~distiller.scheduler.CompressionScheduler` (as in the original):

1. programmatically: build pruners/regularizers, wrap them in policies, ``scheduler.add_policy``
   (see ``examples/scheduling_api/direct_api_pruning.py``);
2. :func:`dict_config` with a dict in the YAML schema;
3. :func:`file_config` with a YAML file.

:func:`validate_schedule` builds everything against a model without training and returns the
:class:`SchedulePlan` (``distiller validate`` prints its ``describe()``). Every mistake raises a
:class:`~distiller.errors.ConfigError` (:class:`~distiller.errors.ScheduleError` for policy and
timing problems) naming the file, the YAML path, the line and a fix.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from distiller.config.build import build_components, build_policies, registry_for
from distiller.config.plan import PlannedPolicy, SchedulePlan, component_classes
from distiller.config.schema import ScheduleSpec, parse_schedule
from distiller.config.yaml_source import YamlSource, format_path, load_yaml_file, load_yaml_text
from distiller.errors import ConfigError
from distiller.scheduler import CompressionScheduler

__all__ = [
    "PlannedPolicy",
    "SchedulePlan",
    "ScheduleSpec",
    "YamlSource",
    "build_schedule",
    "dict_config",
    "file_config",
    "format_path",
    "load_yaml_file",
    "load_yaml_text",
    "parse_schedule",
    "registry_for",
    "validate_schedule",
]

_NON_LR = ("pruners", "regularizers", "quantizers", "extensions", "distillation")
_NON_LR_KINDS = ("pruner", "regularizer", "quantizer", "extension", "distillation")


def build_schedule(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    source: YamlSource,
    scheduler: CompressionScheduler | None = None,
    resumed_epoch: int | None = None,
) -> SchedulePlan:
    """Check ``source``, build its components, add its policies; return the plan (with the scheduler).

    Args:
        model: the model to compress (parameter names are checked against it).
        optimizer: the training optimizer (LR schedulers and quantizers receive it).
        source: a loaded schedule (:func:`load_yaml_file`, :func:`load_yaml_text`).
        scheduler: add to this scheduler instead of a new one.
        resumed_epoch: the last completed epoch of a resumed run (``start_epoch - 1``); LR
            schedulers are built with ``last_epoch = resumed_epoch`` (``-1`` when ``None``).

    Raises:
        ConfigError: see :mod:`distiller.config.schema` and :mod:`distiller.config.build`.
    """
    if resumed_epoch is not None and (isinstance(resumed_epoch, bool) or not isinstance(resumed_epoch, int)):
        raise ConfigError(f"resumed_epoch must be an integer epoch or None, got {resumed_epoch!r}.")
    spec = parse_schedule(source)
    if scheduler is None:
        scheduler = CompressionScheduler(model)
    components = build_components(spec, model, optimizer, _NON_LR)
    build_policies(spec, scheduler, components, _NON_LR_KINDS, model)
    last_epoch = -1 if resumed_epoch is None else resumed_epoch
    components.update(build_components(spec, model, optimizer, ("lr_schedulers",), last_epoch))
    build_policies(spec, scheduler, components, ("lr_scheduler",), model)
    planned = [
        PlannedPolicy.from_spec(ps, spec.components[ps.section][ps.instance_name], source.line(ps.path))
        for ps in spec.policies
    ]
    return SchedulePlan(source.name, planned, component_classes(spec.components), list(source.warnings), scheduler)


def dict_config(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    sched_dict: Mapping[str, Any],
    scheduler: CompressionScheduler | None = None,
    resumed_epoch: int | None = None,
    source: str = "<dict>",
) -> CompressionScheduler:
    """Build a scheduler from a dict in the YAML schema (the original's ``dict_config``)."""
    return build_schedule(model, optimizer, YamlSource(source, sched_dict), scheduler, resumed_epoch).scheduler


def file_config(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    filename: str | os.PathLike,
    scheduler: CompressionScheduler | None = None,
    resumed_epoch: int | None = None,
) -> CompressionScheduler:
    """Build a scheduler from a YAML schedule file (the original's ``file_config``)."""
    return build_schedule(model, optimizer, load_yaml_file(filename), scheduler, resumed_epoch).scheduler


def _validation_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params or [torch.zeros(1, requires_grad=True)], lr=0.1)


def validate_schedule(
    path: str | os.PathLike | Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    resumed_epoch: int | None = None,
) -> SchedulePlan:
    """Parse and check a schedule against ``model`` without training; return the resolved plan.

    Everything a training run would build is built (components, policies, LR schedulers on a
    throw-away optimizer when none is given), so validation catches what a run would hit at
    start-up. Nothing is applied to the model: masks are computed when policies fire, and a
    quantizer prepares the model only when its policy first fires.

    Args:
        path: a YAML file, or a dict in the schema.

    Raises:
        ConfigError: the first problem found, with file, YAML path, line and fix.
    """
    source = YamlSource("<dict>", path) if isinstance(path, Mapping) else load_yaml_file(path)
    return build_schedule(model, optimizer or _validation_optimizer(model), source, None, resumed_epoch)
