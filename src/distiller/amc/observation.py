"""The AMC observation: the original's 13 features of the step about to be taken, normalized.

He et al. (AMC, ECCV 2018, §3.2) embed each layer as ``(t, n, c, h, w, stride, k, FLOPs[t],
reduced, rest, a_{t-1})``; Distiller added the layer type and its weight count. The features of step
``t`` (see :class:`~distiller.amc.steps.StepSpec` for the representative layer) are:

=========  ==============================================================================================
``t``      the step number (0 for the first step)
``type``   the representative layer's kind: 0 convolution, 1 grouped/depthwise convolution, 2 Linear
``n``      its output channels (``weight.shape[0]``)
``c``      its input channels
``h``      height of its input feature map (1 for Linear)
``w``      width of its input feature map (1 for Linear)
``stride`` its stride (0 for Linear)
``k``      its kernel size (1 for Linear)
``MACs``   dense MACs of every layer the step's channel group occupies
``Weights`` weight elements of those layers
``reduced`` MACs removed by the steps before ``t``, as a fraction of the dense network's MACs
``rest``   current MACs of the layers that the steps after ``t`` can still shrink, as a fraction of
           the dense MACs
``prev_a`` the previous step's action: the fraction of its channels actually removed (0 at ``t = 0``)
=========  ==============================================================================================

The first ten are static: they are computed once on the dense network and min-max normalized per
feature over the episode's steps (``(x - min) / (max - min)``, 0 when every step has the same value),
as in HAN Lab's implementation, so every feature lies in [0, 1] whatever the network's size. The
last three change during the episode and are fractions already. The agent therefore sees 13 numbers
in [0, 1]; the observation space is ``Box(0, 1, (13,), float32)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distiller.amc.steps import LAYER_TYPES, StepSpec

__all__ = ["FEATURES", "STATIC_FEATURES", "normalize_columns", "observation", "static_features"]

FEATURES = ("t", "type", "n", "c", "h", "w", "stride", "k", "MACs", "Weights", "reduced", "rest", "prev_a")
STATIC_FEATURES = FEATURES[:10]


def static_features(steps: Sequence[StepSpec]) -> np.ndarray:
    """The raw (unnormalized) static features, one row per step, columns :data:`STATIC_FEATURES`."""
    rows = [[s.index, LAYER_TYPES[s.kind], s.n, s.c, s.h, s.w, s.stride, s.k, s.macs, s.weights] for s in steps]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(STATIC_FEATURES))


def normalize_columns(table: np.ndarray) -> np.ndarray:
    """Min-max normalize each column to [0, 1]; a constant column becomes 0."""
    low = table.min(axis=0, initial=np.inf) if len(table) else np.zeros(table.shape[1])
    high = table.max(axis=0, initial=-np.inf) if len(table) else np.zeros(table.shape[1])
    span = high - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (table - low) / safe, 0.0)


def observation(static_row: np.ndarray, reduced: float, rest: float, prev_a: float) -> np.ndarray:
    """The 13-feature observation: a normalized static row and the three dynamic fractions (clipped to [0, 1])."""
    dynamic = np.clip(np.asarray([reduced, rest, prev_a], dtype=np.float64), 0.0, 1.0)
    return np.concatenate([static_row, dynamic]).astype(np.float32)
