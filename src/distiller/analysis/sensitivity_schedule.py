"""From a sensitivity table to a pruning schedule: per-layer targets within an accuracy budget.

The rule (one accuracy budget for every layer, the usual reading of a sensitivity analysis): for each
parameter or group, the **target** is the highest tested sparsity whose accuracy drop from that
row-set's own sparsity-0 accuracy is at most ``max_loss`` percentage points. Every tested level
counts, also one above a level that exceeded the budget (a noisy, non-monotone curve); a parameter
whose only qualifying level is 0 is left out of the schedule.

The targets become an AGP schedule (Zhu & Gupta 2017) that the original's recipes use:

* element tables: one ``AutomatedGradualPruner`` per distinct target;
* filter / channel tables: one ``L1RankedStructureParameterPruner_AGP`` per distinct target, with
  ``group_type: Filters`` / ``Channels``; coupled-group rows list the group's pruned weights with
  ``group_dependency: Coupled``, so training prunes the whole group the way the analysis did.

Everything here is pure (tables and dicts in, dicts out) except :func:`write_schedule`.
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from distiller.analysis.sensitivity import KINDS, SensitivityTable
from distiller.errors import ConfigError
from distiller.fileio import atomic_output
from distiller.naming import normalize_module_name
from distiller.registry import did_you_mean

__all__ = [
    "SensitivityTarget",
    "check_table_names",
    "parse_unit_name",
    "schedule_from_targets",
    "sensitivity_targets",
    "write_schedule",
]

METRICS = {"top1": 0, "top5": 1}
INITIAL_SPARSITY = 0.05
_GROUP_NAME = re.compile(r"^group(\d+):(.+)$")
_TOLERANCE = 1e-9  # accuracies are printed with three decimals; a drop equal to the budget is within it


def parse_unit_name(name: str) -> tuple[int | None, list[str]]:
    """``(group id, weights)`` of a table row name: ``group3:a.weight;b.weight`` -> ``(3, [a, b])``;
    a parameter name -> ``(None, [name])``."""
    match = _GROUP_NAME.match(name)
    if match is None:
        return None, [name]
    weights = [w.strip() for w in match.group(2).split(";") if w.strip()]
    return int(match.group(1)), weights


@dataclass(frozen=True)
class SensitivityTarget:
    """The chosen sparsity of one row-set, with the accuracies that justify it."""

    name: str
    sparsity: float
    dense: float  # the metric at sparsity 0
    value: float  # the metric at ``sparsity``

    @property
    def drop(self) -> float:
        return self.dense - self.value

    @property
    def group(self) -> int | None:
        return parse_unit_name(self.name)[0]

    @property
    def weights(self) -> list[str]:
        return parse_unit_name(self.name)[1]


def sensitivity_targets(
    sensitivities: SensitivityTable, max_loss: float, metric: str = "top1", source: str = "the table"
) -> list[SensitivityTarget]:
    """The target of every row-set (see the module docstring for the rule), in table order.

    Args:
        sensitivities: ``{name: {sparsity: (top1, top5, loss)}}``.
        max_loss: the accuracy budget, in percentage points of ``metric``.
        metric: ``top1`` or ``top5``.
        source: the table's file, for error messages.

    Returns:
        One :class:`SensitivityTarget` per row-set; ``sparsity`` is 0 when no pruned level fits.

    Raises:
        ConfigError: a negative budget, an unknown metric, or a row-set without a sparsity-0 row.
    """
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}.")
    if not max_loss >= 0:
        raise ConfigError(f"--max-loss is an accuracy drop in percentage points and must be >= 0, got {max_loss}.")
    index = METRICS[metric]
    targets = []
    for name, levels in sensitivities.items():
        if 0.0 not in levels:
            raise ConfigError(
                f"{source}: {name!r} has no row at sparsity 0, the dense accuracy its budget is measured from. "
                "Rerun the analysis with a --sense-range that starts at 0."
            )
        dense = levels[0.0][index]
        within = [s for s, values in levels.items() if dense - values[index] <= max_loss + _TOLERANCE]
        best = max(within)
        targets.append(SensitivityTarget(name, best, dense, levels[best][index]))
    return targets


def check_table_names(sensitivities: Iterable[str], parameter_names: Iterable[str], source: str, arch: str) -> None:
    """Check that every parameter a table names (group members too) is a parameter of the model.

    Names are compared in canonical form, so tables of ``DataParallel`` models (``module.`` prefix),
    as the original wrote them, match.

    Raises:
        ConfigError: naming the table file, the bad name and close matches.
    """
    known = {normalize_module_name(n) for n in parameter_names}
    for name in sensitivities:
        _, weights = parse_unit_name(name)
        for weight in weights:
            if normalize_module_name(weight) not in known:
                where = f" (in row {name!r})" if weight != name else ""
                raise ConfigError(
                    f"{source}: {weight!r}{where} is not a parameter of {arch}.{did_you_mean(weight, sorted(known))} "
                    "Pass the architecture the table was made for with -a."
                )


def _instance_name(prefix: str, target: float) -> str:
    return f"{prefix}_{f'{target:g}'.replace('.', '_')}"


def schedule_from_targets(
    targets: Iterable[SensitivityTarget],
    group: str,
    *,
    start_epoch: int = 0,
    end_epoch: int = 30,
    frequency: int = 2,
    initial_sparsity: float = INITIAL_SPARSITY,
) -> dict[str, Any]:
    """An AGP schedule (a dict in the YAML schema) that prunes every parameter to its target.

    Args:
        targets: from :func:`sensitivity_targets`; zero targets are left out.
        group: the kind of the table: ``element``, ``filter`` or ``channel``.
        start_epoch: first epoch of the AGP window.
        end_epoch: end of the window (exclusive); the final sparsity is reached at ``end_epoch -
            frequency``.
        frequency: epochs between pruning steps.
        initial_sparsity: the AGP starting level; a target at or below it starts from 0 instead
            (AGP needs ``final > initial``).

    Raises:
        ConfigError: an unknown group, group rows in an element table, a bad window, or no target
            above 0 (nothing to prune).
    """
    if group not in KINDS:
        raise ConfigError(f"--sense must be one of {', '.join(KINDS)}, got {group!r}.")
    if not (0 <= start_epoch < end_epoch) or frequency < 1:
        raise ConfigError(
            f"The AGP window needs 0 <= --start-epoch < --end-epoch and --frequency >= 1; got start {start_epoch}, "
            f"end {end_epoch}, frequency {frequency}."
        )
    chosen = [t for t in targets if t.sparsity > 0]
    if not chosen:
        raise ConfigError(
            "No parameter stays within the accuracy budget at any sparsity above 0, so there is nothing to prune; "
            "raise --max-loss."
        )
    by_level: OrderedDict[tuple[float, bool], list[str]] = OrderedDict()
    for target in sorted(chosen, key=lambda t: -t.sparsity):
        coupled = target.group is not None
        if coupled and group == "element":
            raise ConfigError(
                f"Row {target.name!r} is a coupled channel group, which comes from --sense filter or channel; "
                "pass --sense filter or --sense channel."
            )
        by_level.setdefault((target.sparsity, coupled), []).extend(target.weights)
    pruners: dict[str, dict[str, Any]] = {}
    for (level, coupled), weights in by_level.items():
        entry: dict[str, Any]
        if group == "element":
            name = _instance_name("agp", level)
            entry = {"class": "AutomatedGradualPruner"}
        else:
            structure = "filters" if group == "filter" else "channels"
            name = _instance_name(("group_" if coupled else "") + structure, level)
            entry = {
                "class": "L1RankedStructureParameterPruner_AGP",
                "group_type": "Filters" if group == "filter" else "Channels",
            }
            if coupled:
                entry["group_dependency"] = "Coupled"
        entry["initial_sparsity"] = initial_sparsity if level > initial_sparsity else 0.0
        entry["final_sparsity"] = level
        entry["weights"] = list(dict.fromkeys(weights))
        pruners[name] = entry
    policies = [
        {
            "pruner": {"instance_name": name},
            "starting_epoch": start_epoch,
            "ending_epoch": end_epoch,
            "frequency": frequency,
        }
        for name in pruners
    ]
    return {"version": 1, "pruners": pruners, "policies": policies}


def write_schedule(schedule: Mapping[str, Any], path: str | os.PathLike, header: str = "") -> Path:
    """Write ``schedule`` as YAML (``yaml.safe_dump``, keys in order) after a ``#`` comment ``header``,
    atomically; returns the path."""
    path = Path(path)
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    text = comment + yaml.safe_dump(dict(schedule), sort_keys=False, default_flow_style=None, width=120)
    with atomic_output(path, "schedule") as tmp:
        tmp.write_text(text)
    return path
