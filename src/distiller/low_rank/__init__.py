"""Low-rank factorization: replacing Linear and Conv2d layers by truncated-SVD factors.

A weight ``W`` (``m × n``) is replaced by two thin factors ``A`` (``m × k``) and ``B`` (``k × n``),
the best rank-``k`` approximation, so one layer becomes two smaller ones in sequence: fewer
parameters and MACs when ``k`` is below the break-even rank ``m·n / (m + n)``. Linear layers and
convolutions (across channels, or across the two spatial axes) are supported; the rank is given
directly or chosen by the share of the spectrum's energy to keep.

- :func:`low_rank_decompose` replaces layers of a model in place (optimizer and masks follow);
- :func:`rank_sweep` tabulates accuracy against rank for one layer;
- :func:`break_even_rank`, :func:`dense_cost`, :func:`factorized_cost` are the closed-form costs;
- :func:`truncated_svd`, :func:`energy_rank` are the math on a matrix;
- ``TruncatedSVD`` (alias ``LowRankDecomposition``) is the YAML schedule extension;
- checkpoints record the factorizations (:func:`applied_decompositions`) and loading replays them.

The parts that need pandas or the scheduler load on first use, so the checkpoint loader, which
replays factorizations, does not pull them in.
"""

from distiller.low_rank.conv import factorize_conv
from distiller.low_rank.cost import METHODS, Cost, break_even_rank, dense_cost, factorized_cost, full_rank
from distiller.low_rank.linear import factorize_linear
from distiller.low_rank.module import FactorizedLayer
from distiller.low_rank.record import DecompositionRecord, applied_decompositions, replay_decompositions
from distiller.low_rank.svd import SPLITS, LowRankFactors, energy_kept, energy_rank, singular_values, truncated_svd

_LAZY = {
    "TruncatedSVD": "distiller.low_rank.extension",
    "factorize_layer": "distiller.low_rank.replace",
    "low_rank_decompose": "distiller.low_rank.replace",
    "LayerReport": "distiller.low_rank.report",
    "LowRankReport": "distiller.low_rank.report",
    "rank_sweep": "distiller.low_rank.sweep",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'distiller.low_rank' has no attribute {name!r}")


__all__ = [
    "METHODS",
    "SPLITS",
    "Cost",
    "DecompositionRecord",
    "FactorizedLayer",
    "LayerReport",
    "LowRankFactors",
    "LowRankReport",
    "TruncatedSVD",
    "applied_decompositions",
    "break_even_rank",
    "dense_cost",
    "energy_kept",
    "energy_rank",
    "factorize_conv",
    "factorize_layer",
    "factorize_linear",
    "factorized_cost",
    "full_rank",
    "low_rank_decompose",
    "rank_sweep",
    "replay_decompositions",
    "singular_values",
    "truncated_svd",
]
