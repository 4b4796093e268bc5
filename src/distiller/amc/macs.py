"""The MACs of a network as a closed function of how many channels each AMC step removes.

An AMC episode decides, step by step, how many channels of each prunable channel group to remove,
and both the observation (``reduced``, ``rest``) and the ``mac-constrained`` action clamp need the
MACs of networks that do not exist yet ("what if every later step removed as much as it may?").
Building and tracing those networks would cost more than the episode itself, so the count is a
formula instead.

Every convolution (plain, grouped, depthwise, transposed) and every Linear layer costs, per sample,
``unit * rows * cols`` MACs, where ``rows x cols`` are the first two dimensions of its weight and
``unit`` depends only on the kernel and the feature-map size (see :mod:`distiller.graph.macs`:
``H_out * W_out * k_h * k_w * C_out * C_in / groups`` and ``weight.shape == (C_out, C_in / groups,
k_h, k_w)``). Removing a channel of a group removes ``per_channel`` rows (or columns) from every
weight the group occupies, so a layer's MACs after pruning are ``macs * rows_kept * cols_kept /
(rows * cols)``, exactly, as long as the layer is not pruned in its spatial dimensions. Layers that
no step touches keep their MACs. The tests check the formula against
:func:`~distiller.summary.compute_summary` of the thinned network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Footprint", "LayerCost", "MacModel"]


@dataclass(frozen=True)
class LayerCost:
    """One call of a convolution or Linear layer.

    Attributes:
        name: the graph node (a module called twice has two costs, ``fc`` and ``fc#1``).
        tensor: its weight's canonical name.
        macs: dense MACs per sample.
        rows: ``weight.shape[0]``.
        cols: ``weight.shape[1]``.
    """

    name: str
    tensor: str
    macs: int
    rows: int
    cols: int


@dataclass(frozen=True)
class Footprint:
    """Where a step's channels sit: ``per_channel`` indices of dimension ``dim`` of layer ``layer``."""

    layer: int  # index into MacModel.layers
    dim: int  # 0: rows (filters), 1: columns (input channels)
    per_channel: int


@dataclass(frozen=True)
class MacModel:
    """The layers' dense costs and, per AMC step, the weight dimensions its channels occupy."""

    layers: tuple[LayerCost, ...]
    footprints: tuple[tuple[Footprint, ...], ...]  # one tuple per step

    @property
    def dense_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def num_steps(self) -> int:
        return len(self.footprints)

    def layer_macs(self, removed: Sequence[int]) -> list[int]:
        """MACs of every layer when step ``t`` removes ``removed[t]`` channels (missing steps: 0)."""
        cut = [[0, 0] for _ in self.layers]
        for step, count in enumerate(removed):
            if count:
                for fp in self.footprints[step]:
                    cut[fp.layer][fp.dim] += count * fp.per_channel
        out = []
        for layer, (rows_cut, cols_cut) in zip(self.layers, cut):
            rows, cols = max(layer.rows - rows_cut, 0), max(layer.cols - cols_cut, 0)
            out.append(layer.macs * rows * cols // (layer.rows * layer.cols))
        return out

    def macs(self, removed: Sequence[int]) -> int:
        """Total MACs per sample after the steps remove ``removed`` channels."""
        return sum(self.layer_macs(removed))

    def step_layers(self, steps: Iterable[int]) -> set[int]:
        """Indices of the layers that any of ``steps`` touches."""
        return {fp.layer for t in steps for fp in self.footprints[t]}

    def macs_of(self, layers: Iterable[int], removed: Sequence[int]) -> int:
        """MACs of the given layers (indices) after ``removed``."""
        per_layer = self.layer_macs(removed)
        return sum(per_layer[i] for i in layers)
