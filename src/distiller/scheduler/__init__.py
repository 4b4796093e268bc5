"""Compression scheduling: the object a training loop calls at six points of every epoch.

``CompressionScheduler`` binds policies (pruning, regularization, quantization, LR, extensions,
knowledge distillation) to epoch or step windows and owns the masks. ``LR_SCHEDULERS`` and
``EXTENSIONS`` are the registries a YAML schedule's ``lr_schedulers:`` and ``extensions:``
sections resolve ``class:`` names in.
"""

from distiller.registry import Registry
from distiller.scheduler.compression_scheduler import CompressionScheduler, ScheduledPolicy
from distiller.scheduler.lr import LR_SCHEDULERS, MultiStepMultiGammaLR, PolynomialLR
from distiller.scheduler.masks import SchedulerMasks
from distiller.scheduler.policies import (
    ExtensionPolicy,
    LossComponent,
    LRPolicy,
    PolicyLoss,
    QuantizationPolicy,
    RegularizationPolicy,
    ScheduledTrainingPolicy,
)
from distiller.scheduler.pruning_policy import PruningPolicy
from distiller.scheduler.windows import Window, make_window

EXTENSIONS: Registry[type] = Registry("extension")
"""YAML ``class:`` name -> extension policy class (thinning extensions register here)."""

__all__ = [
    "EXTENSIONS",
    "LR_SCHEDULERS",
    "CompressionScheduler",
    "ExtensionPolicy",
    "LRPolicy",
    "LossComponent",
    "MultiStepMultiGammaLR",
    "PolicyLoss",
    "PolynomialLR",
    "PruningPolicy",
    "QuantizationPolicy",
    "RegularizationPolicy",
    "ScheduledPolicy",
    "ScheduledTrainingPolicy",
    "SchedulerMasks",
    "Window",
    "make_window",
]

# Extensions register into EXTENSIONS: thinning (StructureRemover, FilterRemover, ChannelRemover) and
# low-rank factorization (TruncatedSVD, LowRankDecomposition).
import distiller.low_rank.extension  # noqa: E402, F401
import distiller.thinning.extensions  # noqa: E402, F401
