"""The app's ``--summary`` reports and ``--export-onnx``: which library call, which file in the log dir.

Kept out of :mod:`distiller.apps.classifier` so that the app only decides *when* they run. Each
summary returns the text to print (or None) and the files it wrote; files go under the run's log dir
(DESIGN §7), named after the report (``compute.csv``) or the architecture (``resnet20_cifar.png``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from distiller.summary import (
    compute_summary,
    draw_model_to_file,
    model_summary_text,
    modules_summary,
    render_compute_summary,
    render_modules_summary,
    render_sparsity_summary,
    sparsity_summary,
    write_csv,
)

__all__ = ["SUMMARIES", "Report", "export_onnx_file", "onnx_path", "run_summary"]


@dataclass
class Report:
    """What one summary produced: text to print and files written."""

    text: str | None = None
    saved: list[Path] = field(default_factory=list)


def _sparsity(model: nn.Module, run_dir: Path, arch: str) -> Report:
    table = sparsity_summary(model)
    return Report(render_sparsity_summary(table, title="Parameters:"), [write_csv(table, run_dir / "sparsity.csv")])


def _compute(model: nn.Module, run_dir: Path, arch: str) -> Report:
    table = compute_summary(model)
    return Report(render_compute_summary(table), [write_csv(table, run_dir / "compute.csv")])


def _model(model: nn.Module, run_dir: Path, arch: str) -> Report:
    return Report(model_summary_text(model))


def _modules(model: nn.Module, run_dir: Path, arch: str) -> Report:
    return Report(render_modules_summary(modules_summary(model)))


def _png(model: nn.Module, run_dir: Path, arch: str, with_params: bool = False) -> Report:
    name = f"{arch}_w_params.png" if with_params else f"{arch}.png"
    return Report(saved=[draw_model_to_file(model, run_dir / name, display_param_nodes=with_params)])


SUMMARIES: dict[str, Callable[[nn.Module, Path, str], Report]] = {
    "sparsity": _sparsity,
    "compute": _compute,
    "model": _model,
    "modules": _modules,
    "png": _png,
    "png_w_params": lambda model, run_dir, arch: _png(model, run_dir, arch, with_params=True),
}
"""``--summary`` choices and what they run."""


def run_summary(kind: str, model: nn.Module, run_dir: Path, arch: str) -> Report:
    """Run the ``--summary`` report ``kind`` on ``model``, writing its files under ``run_dir``."""
    return SUMMARIES[kind](model, run_dir, arch)


def onnx_path(requested: str, run_dir: Path, arch: str) -> Path:
    """Where ``--export-onnx [PATH]`` writes: ``<log dir>/<arch>.onnx`` by default, a relative PATH under
    the log dir (as the original did), an absolute PATH as given."""
    if not requested:
        return run_dir / f"{arch}.onnx"
    path = Path(requested).expanduser()
    return path if path.is_absolute() else run_dir / path


def export_onnx_file(model: nn.Module, requested: str, run_dir: Path, arch: str) -> Path:
    """``--export-onnx``: the model (with a softmax output, as the original) as an ONNX file."""
    from distiller.quantization import export_onnx

    return export_onnx(model, onnx_path(requested, run_dir, arch), add_softmax=True)
