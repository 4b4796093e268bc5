"""The typed analysis options of the classifier app: sensitivity analysis, activation statistics,
histograms and what the data loggers record (``--sense*``, ``--act-stats``, ``--act-hist``,
``--param-hist``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AnalysisOptions"]


@dataclass
class AnalysisOptions:
    """Defaults are the original's."""

    sensitivity: str | None = None  # --sense {element,filter,channel}
    sensitivity_range: tuple[float, float, float] = (0.0, 0.95, 0.05)  # START STOP STEP (stop excluded)
    sensitivity_groups: bool = False  # --sense-groups: coupled channel groups as one unit
    sensitivity_workers: int = 1  # --sense-workers: evaluation processes
    activation_stats: list[str] = field(default_factory=list)  # --act-stats train valid test
    activation_histograms: float | None = None  # --act-hist fraction (<= 1) or sample count (> 1)
    param_hist: bool = False  # --param-hist: weight histograms in TensorBoard
    tensorboard: bool = True  # --no-tensorboard turns the TensorBoard logger off
