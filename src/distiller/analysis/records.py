"""Per-batch records of activations: :class:`RecordsActivationStatsCollector`.

Where a summary collector keeps one running mean, a records collector keeps one row per batch for
each watched module (by default every ``Conv2d``): how the output's range, spread and energy move
from batch to batch, which is what one plots to see activations drift during training or differ
between data sets. The original's classifier app collected these per phase (``--act-stats``).

Each batch's row has, over the module's output tensor:

``min``, ``max``
    the batch's extremes;
``mean``, ``std``
    over all the batch's elements (population std: a one-element output gives 0, never NaN);
``l2``
    the mean over the batch's samples of each sample's L2 norm;
``shape``
    the output's shape, written ``(32, 16, 8, 8)`` (the last batch may be smaller).

The original kept one row per *sample* (each sample's own min, max...); one row per batch keeps the
records small enough to collect on every training batch, and the per-sample view is what
:class:`~distiller.analysis.raw_activations.RawActivationsCollector` is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from distiller.analysis.collector_files import excel_sheet_names, table_path, write_csv, write_workbook
from distiller.analysis.collectors import ActivationStatsCollector
from distiller.quantization.calibration import float_tensor, per_sample, widen

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RECORD_STATS", "RecordsActivationStatsCollector", "batch_record"]

RECORD_STATS: tuple[str, ...] = ("min", "max", "mean", "std", "l2")
"""The numeric fields of one record, in column order (``shape`` follows them)."""

INDEX_SHEET = "modules"
"""The workbook's first sheet: which sheet holds which module (sheet names are limited to 31 characters)."""


def batch_record(tensor: torch.Tensor) -> dict[str, float]:
    """The record of one batch of activations (see the module docstring); dimension 0 is the batch."""
    with torch.no_grad():
        x = per_sample(widen(tensor.detach()))
        std, mean = torch.std_mean(x, correction=0)
        l2 = torch.linalg.vector_norm(x, ord=2, dim=1).mean()
        values = torch.stack([x.min(), x.max(), mean, std, l2]).tolist()  # one device sync
    return dict(zip(RECORD_STATS, values, strict=True))


class RecordsActivationStatsCollector(ActivationStatsCollector):
    """One record (min, max, mean, std, l2, shape) per batch of each watched module's output.

    ::

        collector = RecordsActivationStatsCollector(model)   # every Conv2d
        with collector, torch.no_grad():
            for x, _ in loader:
                model(x)
        collector.value()["conv1"]["max"]   # one float per batch
        collector.save("records.xlsx")      # one sheet per module; or "records.csv" (long format)

    Only floating-point tensor outputs are recorded. A module called twice in one forward pass
    raises :class:`~distiller.errors.QuantizationError` (its rows would no longer be one per batch).

    Args:
        model: the model to watch (DataParallel wrappers are unwrapped).
        classes: module types to watch (default ``Conv2d``; ``None``: every leaf but ``nn.Identity``).
        module_names: watch exactly these modules instead of ``classes``.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[type[nn.Module]] | None = (nn.Conv2d,),
        *,
        module_names: Iterable[str] | None = None,
    ) -> None:
        super().__init__(model, "statistics_records", classes, module_names=module_names)
        self._records: dict[str, dict[str, list[Any]]] = {}
        self._watch(self.modules)

    def _watch(self, modules: dict[str, nn.Module]) -> None:
        for name in modules:
            self._records.setdefault(name, {key: [] for key in (*RECORD_STATS, "shape")})

    def on_output(self, name: str, output: Any) -> None:
        tensor = float_tensor(output)
        if tensor is None:
            return
        records = self._records[name]
        for key, value in batch_record(tensor).items():
            records[key].append(value)
        records["shape"].append(str(tuple(tensor.shape)))

    def reset(self) -> RecordsActivationStatsCollector:
        """Forget every record."""
        self._records = {}
        self._watch(self.modules)
        return self

    def value(self) -> dict[str, dict[str, list[Any]]]:
        """``{module: {"min" | "max" | "mean" | "std" | "l2": [float per batch], "shape": [str per batch]}}``.

        Every list of a module has one entry per batch that went through it, in order; modules
        that saw no batch are absent. The lists are copies.
        """
        return {
            name: {key: list(values) for key, values in records.items()}
            for name, records in self._records.items()
            if records["shape"]
        }

    def to_dataframe(self) -> pd.DataFrame:
        """All records in long format: columns ``module, batch, min, max, mean, std, l2, shape``,
        one row per (module, batch), modules in ``named_modules`` order."""
        import pandas as pd

        columns = ["module", "batch", *RECORD_STATS, "shape"]
        frames = [frame.reset_index().assign(module=name) for name, frame in self.to_dataframes().items()]
        if not frames:
            return pd.DataFrame(columns=columns)
        return pd.concat(frames, ignore_index=True)[columns]

    def to_dataframes(self) -> dict[str, pd.DataFrame]:
        """``{module: DataFrame}``, each indexed by ``batch`` with columns ``min, max, mean, std, l2, shape``."""
        import pandas as pd

        frames = {}
        for name, records in self.value().items():
            frame = pd.DataFrame(records, columns=[*RECORD_STATS, "shape"])
            frame.index.name = "batch"
            frames[name] = frame
        return frames

    def save(self, fname: str | Path) -> Path:
        """Write the records to ``fname`` and return its path.

        ``.xlsx`` (or no extension): a first sheet ``modules`` mapping each module to its sheet,
        then one sheet per module (:meth:`to_dataframes`). Sheet names are the module names, made
        valid for Excel (at most 31 characters, unique). ``.csv``: :meth:`to_dataframe`, the long
        format, without an index column.

        Raises:
            ConfigError: another extension, or ``.xlsx`` without openpyxl installed.
            ExportError: the file cannot be written.
        """
        import pandas as pd

        path, fmt = table_path(fname)
        if fmt == "csv":
            return write_csv(self.to_dataframe(), path, index=False)
        frames = self.to_dataframes()
        sheets = excel_sheet_names(frames, reserved=[INDEX_SHEET])
        index = pd.DataFrame(
            {"module": list(sheets), "sheet": list(sheets.values()), "batches": [len(f) for f in frames.values()]}
        ).set_index("module")
        return write_workbook({INDEX_SHEET: index, **{sheets[n]: f for n, f in frames.items()}}, path)
