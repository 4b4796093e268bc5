"""The collectors of the classifier app's ``--act-stats PHASE...``, per phase, and their files.

The original app built, for each of the phases ``train``, ``valid`` and ``test`` it was asked for,
the same five collectors, ran each phase inside :func:`~distiller.analysis.collectors.collectors_context`
and saved the results in the log dir. :func:`create_activation_stats_collectors` and
:func:`save_collectors_data` are those two steps; :class:`distiller.apps.activation_stats.PhaseCollectors`
wires them into the app.

The collectors are built with ``publish=False``: they measure, and never change the statistics an
activation-ranked pruner ranks by.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from distiller.analysis.activations import SummaryActivationStatsCollector
from distiller.analysis.collector_files import TABLE_FORMATS, require_openpyxl
from distiller.analysis.collectors import ActivationStatsCollector
from distiller.analysis.records import RecordsActivationStatsCollector
from distiller.errors import ConfigError
from distiller.registry import did_you_mean

__all__ = [
    "PHASES",
    "PHASE_STATS",
    "check_phases",
    "create_activation_stats_collectors",
    "phase_collectors",
    "save_collectors_data",
]

PHASES: tuple[str, ...] = ("train", "valid", "test")
"""The phases of ``--act-stats``."""

PHASE_STATS: tuple[str, ...] = ("sparsity_ofm", "l1_channels", "apoz_channels", "mean_channels", "records")
"""The collectors of each measured phase, by name (the keys of a phase's dict)."""


def check_phases(phases: Sequence[str]) -> list[str]:
    """``phases`` without duplicates, in order.

    Raises:
        ConfigError: a phase other than train, valid and test.
    """
    for phase in phases:
        if phase not in PHASES:
            raise ConfigError(
                f"--act-stats: unknown phase {phase!r}.{did_you_mean(str(phase), list(PHASES))} "
                f"Choose among {', '.join(PHASES)}."
            )
    return list(dict.fromkeys(phases))


def phase_collectors(model: nn.Module) -> dict[str, ActivationStatsCollector]:
    """The five collectors of one phase: four summaries of the activation modules' outputs
    (ReLU, ReLU6, LeakyReLU) and per-batch records of every ``Conv2d``'s output."""
    collectors: dict[str, ActivationStatsCollector] = {
        stat: SummaryActivationStatsCollector(model, stat, publish=False) for stat in PHASE_STATS[:-1]
    }
    collectors["records"] = RecordsActivationStatsCollector(model, classes=(nn.Conv2d,))
    return collectors


def create_activation_stats_collectors(
    model: nn.Module, *phases: str
) -> dict[str, dict[str, ActivationStatsCollector]]:
    """``{phase: {name: collector}}`` for ``train``, ``valid`` and ``test``.

    A phase in ``phases`` gets the collectors of :data:`PHASE_STATS`; the others get an empty dict,
    so ``collectors_context(collectors[phase])`` can wrap every phase unconditionally.

    Raises:
        ConfigError: an unknown phase.
    """
    asked = check_phases(phases)
    return {phase: (phase_collectors(model) if phase in asked else {}) for phase in PHASES}


def save_collectors_data(
    collectors: Mapping[str, ActivationStatsCollector | None],
    directory: str | os.PathLike,
    phase: str,
    formats: Sequence[str] = TABLE_FORMATS,
) -> list[Path]:
    """Write each collector of one phase to ``<directory>/<phase>_<name>.<format>``.

    Existing files of the same name are replaced (the app saves after every epoch, so the files hold
    the latest epoch's statistics). ``None`` collectors are skipped.

    Args:
        collectors: ``{name: collector}``, e.g. ``create_activation_stats_collectors(...)["valid"]``.
        directory: the folder (created when missing), usually the run's log dir.
        phase: the prefix of the file names.
        formats: any of ``"xlsx"`` and ``"csv"``.

    Returns:
        The files written, in the order of ``collectors`` then ``formats``.

    Raises:
        ConfigError: an unknown format, or ``"xlsx"`` without openpyxl installed.
        ExportError: a file cannot be written.
    """
    unknown = [f for f in formats if f not in TABLE_FORMATS]
    if unknown:
        raise ConfigError(f"save_collectors_data: unknown format(s) {unknown}; use {', '.join(TABLE_FORMATS)}.")
    if "xlsx" in formats:
        require_openpyxl()
    directory = Path(directory)
    written: list[Path] = []
    for name, collector in collectors.items():
        if collector is None:
            continue
        for fmt in formats:
            saved = collector.save(directory / f"{phase}_{name}.{fmt}")
            written.extend(saved if isinstance(saved, list) else [saved])
    return written
