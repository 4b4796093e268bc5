"""Greedy pruning and AMC search for a smaller network from the loaded model, so each runs alone.

Both modes start from the weights given with ``--resume-from`` or ``--pretrained`` and end by saving
what they found; any other mode asked for in the same run (evaluation, a schedule, quantization,
another search) would either run instead of the search or act on a model the search replaces. The
modes they exclude, and the message that says so, are the same for both and live here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distiller.errors import ConfigError

if TYPE_CHECKING:
    from distiller.apps.options import ClassifierOptions

__all__ = ["AMC", "GREEDY", "OTHER_MODES", "SearchMode", "other_modes_in", "reject_combinations"]


@dataclass(frozen=True)
class SearchMode:
    """A mode of its own: its flag, its name in messages, and what it leaves for the next run."""

    flag: str
    name: str
    leaves: str


GREEDY = SearchMode("--greedy", "greedy pruning", "the checkpoint it saves")
AMC = SearchMode("--amc", "AMC", "the checkpoint or schedule it saves")

# Modes a search does not combine with, in the order messages list them: (flag, is it asked for).
OTHER_MODES: tuple[tuple[str, Callable[[ClassifierOptions], bool]], ...] = (
    ("--evaluate", lambda o: o.evaluate),
    ("--compress", lambda o: bool(o.compress)),
    ("--summary", lambda o: bool(o.summary)),
    ("--onnx-model", lambda o: o.onnx_model is not None),
    ("--quantize-eval", lambda o: o.quant.quantize_eval),
    ("--qe-calibration", lambda o: o.quant.calibration is not None),
    ("--act-hist", lambda o: o.analysis.activation_histograms is not None),
    ("--sense", lambda o: o.analysis.sensitivity is not None),
    ("--greedy", lambda o: o.greedy.enabled),
    ("--kd-teacher", lambda o: bool(o.kd_teacher)),
    ("--amc", lambda o: o.amc.enabled),
)


def other_modes_in(opts: ClassifierOptions, mode: SearchMode) -> list[str]:
    """The flags of the modes other than ``mode`` that ``opts`` asks for."""
    return [flag for flag, asked in OTHER_MODES if flag != mode.flag and asked(opts)]


def reject_combinations(mode: SearchMode, given: list[str]) -> None:
    """Fail when ``mode`` is asked together with the modes in ``given`` (flag spellings).

    Raises:
        ConfigError: ``given`` is not empty.
    """
    if given:
        raise ConfigError(
            f"{mode.flag} does not combine with {', '.join(given)}: {mode.name} is a mode of its own that searches "
            "for a smaller network starting from the loaded model. Run it alone (with --resume-from or --pretrained "
            f"for the starting weights), then use {mode.leaves} with the other mode."
        )
