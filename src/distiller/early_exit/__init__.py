"""Early exit (BranchyNet): classifiers part-way through a network that let confident samples leave early.

* :func:`attach_exits` adds exit branches to any model by module name; its forward then returns
  ``[exit_0, ..., final]`` (the ``*_earlyexit`` architectures come with the original's exits).
* :class:`EarlyExitCriterion` trains all exits at once with weighted cross-entropies.
* :class:`ExitSimulation` decides per sample which exit a deployed model would stop at (label-free
  softmax entropy by default, the original's label-based cross-entropy as an option) and reports
  per-exit accuracy, the share of each exit and, with :func:`exit_macs`, the average cost per sample.
* :class:`EarlyExitInference` really stops computing at the first confident exit (batch size 1).

See ``docs/algorithms/early_exit.md``.
"""

from distiller.early_exit.branch import (
    BranchPoint,
    ExitsDef,
    attach_exits,
    detach_exits,
    exit_names,
    has_exits,
    num_exits,
    observe_exits,
)
from distiller.early_exit.decision import RULES, confident, exit_scores, first_confident_exit, softmax_entropy
from distiller.early_exit.inference import EarlyExitInference
from distiller.early_exit.loss import EarlyExitCriterion, check_loss_weights, earlyexit_loss, final_output
from distiller.early_exit.macs import ExitCosts, exit_macs
from distiller.early_exit.manager import EarlyExitMgr
from distiller.early_exit.stats import EarlyExitStats, ExitSimulation, ExitStats, format_stats

__all__ = [
    "RULES",
    "BranchPoint",
    "EarlyExitCriterion",
    "EarlyExitInference",
    "EarlyExitMgr",
    "EarlyExitStats",
    "ExitCosts",
    "ExitSimulation",
    "ExitStats",
    "ExitsDef",
    "attach_exits",
    "check_loss_weights",
    "confident",
    "detach_exits",
    "earlyexit_loss",
    "exit_macs",
    "exit_names",
    "exit_scores",
    "final_output",
    "first_confident_exit",
    "format_stats",
    "has_exits",
    "num_exits",
    "observe_exits",
    "softmax_entropy",
]
