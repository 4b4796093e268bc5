"""The activations themselves: :class:`RawActivationsCollector`.

Some analyses need the tensors, not statistics of them: fitting a distribution to a layer's
outputs, comparing a quantized model's activations with the float model's element by element,
or feeding feature maps to an offline tool. The collector copies each watched module's output to
the CPU on every batch and writes one ``.pt`` file per module.

Everything is kept in memory until :meth:`~RawActivationsCollector.reset`: collect a few batches,
not an epoch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from distiller.analysis.collectors import ActivationStatsCollector
from distiller.errors import ConfigError
from distiller.fileio import atomic_output

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RawActivationsCollector", "activation_file_names"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def activation_file_names(names: Iterable[str]) -> dict[str, str]:
    """A unique ``<name>.pt`` file name for each module name (characters outside ``[A-Za-z0-9_.-]``
    become ``_``; clashes after that get ``~2``, ``~3``...)."""
    used: set[str] = set()
    result = {}
    for name in names:
        stem = _UNSAFE.sub("_", name) or "_"
        candidate, n = stem, 1
        while candidate.casefold() in used:  # case-insensitive file systems
            n += 1
            candidate = f"{stem}~{n}"
        used.add(candidate.casefold())
        result[name] = f"{candidate}.pt"
    return result


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy (a copy even on the CPU: an in-place op after the module must not change it)."""
    tensor = tensor.detach()
    if tensor.is_quantized:
        return tensor.dequantize().cpu()
    return tensor.to("cpu", copy=True)


class RawActivationsCollector(ActivationStatsCollector):
    """Keep every output tensor of the watched modules (detached, copied to the CPU).

    ::

        collector = RawActivationsCollector(model, classes=[nn.Conv2d])
        with collector, torch.no_grad():
            model(x)
        collector.value()["conv1"].shape   # (samples, channels, h, w)
        collector.save(run_dir / "raw")    # raw/conv1.pt, ...; torch.load(..., weights_only=True)

    Quantized tensors are stored dequantized. A module called twice in one forward pass raises
    :class:`~distiller.errors.QuantizationError` (its batches would interleave two tensors).

    Args:
        model: the model to watch (DataParallel wrappers are unwrapped).
        classes: module types to watch (default ``None``: every leaf except ``nn.Identity``).
        module_names: watch exactly these modules instead of ``classes``.
    """

    def __init__(
        self,
        model: nn.Module,
        classes: Sequence[type[nn.Module]] | None = None,
        *,
        module_names: Iterable[str] | None = None,
    ) -> None:
        super().__init__(model, "raw_acts", classes, module_names=module_names)
        self._outputs: dict[str, list[torch.Tensor]] = {}
        self._watch(self.modules)

    def _watch(self, modules: dict[str, nn.Module]) -> None:
        for name in modules:
            self._outputs.setdefault(name, [])

    def on_output(self, name: str, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            self._outputs[name].append(_cpu_copy(output))

    def reset(self) -> RawActivationsCollector:
        """Drop every stored tensor."""
        self._outputs = {}
        self._watch(self.modules)
        return self

    def batches(self) -> dict[str, list[torch.Tensor]]:
        """``{module: [output tensor per batch]}`` (the stored tensors, not copies)."""
        return {name: list(outputs) for name, outputs in self._outputs.items() if outputs}

    def value(self) -> dict[str, torch.Tensor]:
        """``{module: tensor}``: each module's batches joined along dimension 0, so a module whose
        output is ``(batch, C, H, W)`` gives ``(samples seen, C, H, W)``. A 0-d output gives one
        value per batch. Modules that saw no batch are absent.

        Raises:
            ConfigError: a module's outputs differ beyond dimension 0 from batch to batch (use
                :meth:`batches`).
        """
        joined = {}
        for name, outputs in self.batches().items():
            if outputs[0].dim() == 0:
                joined[name] = torch.stack(outputs)
                continue
            shapes = {tuple(t.shape[1:]) for t in outputs}
            if len(shapes) > 1 or any(t.dim() != outputs[0].dim() for t in outputs):
                raise ConfigError(
                    f"Module {name!r} returned tensors of shapes {sorted(shapes)} beyond the batch dimension, so "
                    "they cannot be joined into one tensor; read them per batch with batches()."
                )
            joined[name] = torch.cat(outputs)
        return joined

    def to_dataframe(self) -> pd.DataFrame:
        """What is stored, one row per module: ``batches``, ``shape`` (joined), ``numel``, ``dtype``."""
        import pandas as pd

        rows = {
            name: {
                "batches": len(self._outputs[name]),
                "shape": str(tuple(t.shape)),
                "numel": t.numel(),
                "dtype": str(t.dtype).removeprefix("torch."),
            }
            for name, t in self.value().items()
        }
        frame = pd.DataFrame.from_dict(rows, orient="index", columns=["batches", "shape", "numel", "dtype"])
        frame.index.name = "module"
        return frame

    def save(self, fname: str | Path) -> list[Path]:
        """Write each module's :meth:`value` to ``<fname>/<module name>.pt`` (a plain tensor, so
        ``torch.load(path, weights_only=True)`` reads it). ``fname`` is a folder, created if missing.

        Returns:
            The files written, in module order.

        Raises:
            ConfigError: ``fname`` is an existing file, or outputs cannot be joined (see :meth:`value`).
            ExportError: a file cannot be written.
        """
        folder = Path(fname)
        if folder.exists() and not folder.is_dir():
            raise ConfigError(
                f"RawActivationsCollector.save: {str(folder)!r} is a file; it writes one .pt file per module into "
                "a folder. Give a folder path."
            )
        values = self.value()
        names = activation_file_names(values)
        written = []
        for name, tensor in values.items():
            path = folder / names[name]
            with atomic_output(path, "activations file") as tmp:
                torch.save(tensor, tmp)
            written.append(path)
        return written
