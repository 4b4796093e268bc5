"""Pruning: every pruner of the original Distiller, composed from criterion x rate x granularity.

* :mod:`~distiller.pruning.base` — the pruner protocol, :data:`PRUNERS`, :func:`register_pruner`.
* :mod:`~distiller.pruning.rates` — rate schedules (constant, AGP cubic, Baidu ramp, random range).
* :mod:`~distiller.pruning.element` — fine-grained pruners (magnitude, level, sensitivity,
  splicing, Baidu RNN, N:M, global magnitude).
* :mod:`~distiller.pruning.ranked` — Lp-ranked structure pruners and their shared base.
* :mod:`~distiller.pruning.activation_ranked` / :mod:`~distiller.pruning.filter_ranked` — filters
  ranked by activation statistics, gradients, at random, or dropped by Bernoulli draws.
* :mod:`~distiller.pruning.fm_reconstruction` — channel pruning with least-squares re-fitting.
* :mod:`~distiller.pruning.structure` — per-structure norm thresholds.
* :mod:`~distiller.pruning.agp` — the AGP-scheduled variants.
* :mod:`~distiller.pruning.oneshot` — :func:`prune` and :func:`build_pruner`.

Importing this package registers the built-in pruners under their original class names.
"""

from distiller.pruning.activation_ranked import (
    ActivationAPoZRankedFilterPruner,
    ActivationMeanRankedFilterPruner,
    ActivationRankedFilterPruner,
)
from distiller.pruning.agp import (
    ActivationAPoZRankedFilterPruner_AGP,
    ActivationMeanRankedFilterPruner_AGP,
    AutomatedGradualPruner,
    BernoulliFilterPruner_AGP,
    GradientRankedFilterPruner_AGP,
    L1RankedStructureParameterPruner_AGP,
    L2RankedStructureParameterPruner_AGP,
    RandomRankedFilterPruner_AGP,
)
from distiller.pruning.base import PRUNERS, Pruner, register_pruner
from distiller.pruning.element import (
    BaiduRNNPruner,
    GlobalMagnitudePruner,
    MagnitudeParameterPruner,
    NMPruner,
    SensitivityPruner,
    SparsityLevelParameterPruner,
    SplicingPruner,
)
from distiller.pruning.filter_ranked import BernoulliFilterPruner, GradientRankedFilterPruner, RandomRankedFilterPruner
from distiller.pruning.fm_reconstruction import FeatureMapSamples, FMReconstructionChannelPruner, collect_feature_maps
from distiller.pruning.oneshot import build_pruner, prune
from distiller.pruning.ranked import (
    L1RankedStructureParameterPruner,
    L2RankedStructureParameterPruner,
    LpRankedStructureParameterPruner,
    RandomLevelStructureParameterPruner,
    RankedStructurePruner,
)
from distiller.pruning.rates import AgpPruningRate, agp_target, baidu_threshold, random_level
from distiller.pruning.structure import StructureParameterPruner

__all__ = [
    "PRUNERS",
    "ActivationAPoZRankedFilterPruner",
    "ActivationAPoZRankedFilterPruner_AGP",
    "ActivationMeanRankedFilterPruner",
    "ActivationMeanRankedFilterPruner_AGP",
    "ActivationRankedFilterPruner",
    "AgpPruningRate",
    "AutomatedGradualPruner",
    "BaiduRNNPruner",
    "BernoulliFilterPruner",
    "BernoulliFilterPruner_AGP",
    "FMReconstructionChannelPruner",
    "FeatureMapSamples",
    "GlobalMagnitudePruner",
    "GradientRankedFilterPruner",
    "GradientRankedFilterPruner_AGP",
    "L1RankedStructureParameterPruner",
    "L1RankedStructureParameterPruner_AGP",
    "L2RankedStructureParameterPruner",
    "L2RankedStructureParameterPruner_AGP",
    "LpRankedStructureParameterPruner",
    "MagnitudeParameterPruner",
    "NMPruner",
    "Pruner",
    "RandomLevelStructureParameterPruner",
    "RandomRankedFilterPruner",
    "RandomRankedFilterPruner_AGP",
    "RankedStructurePruner",
    "SensitivityPruner",
    "SparsityLevelParameterPruner",
    "SplicingPruner",
    "StructureParameterPruner",
    "agp_target",
    "baidu_threshold",
    "build_pruner",
    "collect_feature_maps",
    "prune",
    "random_level",
    "register_pruner",
]
