"""``--greedy`` and ``--amc`` run alone: the check on the command line, before any mode is dispatched.

The check is made on the parsed flags because the modes that come before a search in the app's
dispatch table would otherwise run silently instead of it. Which modes are excluded, and the
message, are :mod:`distiller.apps.search_modes`'s; this module only knows where argparse stores
each flag.
"""

from __future__ import annotations

import argparse

from distiller.apps.search_modes import OTHER_MODES, SearchMode, reject_combinations

__all__ = ["reject_other_modes"]

# Where argparse stores each flag of search_modes.OTHER_MODES (its ``dest``).
_DEST = {
    "--evaluate": "evaluate",
    "--compress": "compress",
    "--summary": "summary",
    "--onnx-model": "onnx_model",
    "--quantize-eval": "quantize_eval",
    "--qe-calibration": "qe_calibration",
    "--act-hist": "activation_histograms",
    "--sense": "sensitivity",
    "--greedy": "greedy",
    "--kd-teacher": "kd_teacher",
    "--amc": "amc",
}


def reject_other_modes(args: argparse.Namespace, mode: SearchMode) -> None:
    """Fail when the command line asks for ``mode`` and another mode it does not combine with.

    Raises:
        ConfigError: see :func:`~distiller.apps.search_modes.reject_combinations`.
    """
    given = [flag for flag, _ in OTHER_MODES if flag != mode.flag and _given(getattr(args, _DEST[flag], None))]
    reject_combinations(mode, given)


def _given(value: object) -> bool:
    """Whether a flag was given: a count or fraction of 0 is given, an absent flag is None/False/empty."""
    return value is not None and value is not False and value != "" and value != []
