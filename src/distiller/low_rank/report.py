"""What a decomposition did, per layer and in total, as data (and as a DataFrame)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import pandas as pd

__all__ = ["REPORT_COLUMNS", "LayerReport", "LowRankReport"]

REPORT_COLUMNS = (
    "name",
    "type",
    "method",
    "rank",
    "full_rank",
    "break_even_rank",
    "energy",
    "params_before",
    "params_after",
    "macs_before",
    "macs_after",
)


@dataclass(frozen=True)
class LayerReport:
    """One factorized layer.

    Attributes:
        name: canonical module name.
        type: the replaced module's class name (``Linear``, ``Conv2d``).
        method: ``linear``, ``channel`` or ``spatial``.
        rank: the rank used.
        full_rank: the rank at which the factorization is exact.
        break_even_rank: the largest rank that costs no more than the dense layer.
        energy: the share of the squared singular values kept (1 - relative squared error).
        params_before: weights and bias of the dense layer.
        params_after: weights and bias of the two factor layers.
        macs_before: MACs per sample of the dense layer (None when the input size was unknown).
        macs_after: MACs per sample of the two factor layers.
    """

    name: str
    type: str
    method: str
    rank: int
    full_rank: int
    break_even_rank: int
    energy: float
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None

    @property
    def compression(self) -> float:
        """``params_before / params_after``: above 1 when the factorization is smaller."""
        return self.params_before / self.params_after


@dataclass
class LowRankReport:
    """The layers factorized by one call, and the model's parameter count before and after."""

    layers: list[LayerReport] = field(default_factory=list)
    model_params_before: int = 0
    model_params_after: int = 0

    def __iter__(self) -> Iterator[LayerReport]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, name: str) -> LayerReport:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_frame(self) -> pd.DataFrame:
        """One row per layer with :data:`REPORT_COLUMNS`; model totals in ``df.attrs``."""
        df = pd.DataFrame([asdict(r) for r in self.layers], columns=list(REPORT_COLUMNS))
        df.attrs["model_params_before"] = self.model_params_before
        df.attrs["model_params_after"] = self.model_params_after
        return df
