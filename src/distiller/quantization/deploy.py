"""Deployment of a quantized model: the same scales and zero points, as a real int8 ONNX model.

:func:`export_onnx` switches every quantized wrapper to its deployment form (``DequantizeLinear`` →
float operator → ``QuantizeLinear``, with ``int8`` weights and ``int32`` biases as constants) and
exports with the TorchScript-based exporter. ONNX Runtime fuses these patterns into integer kernels
(``QLinearConv``, ``QGemm``, ``QLinearAdd``, ...). Activations are exported as ``uint8`` and weights as
``int8``, the x86 fast path; see ``docs/design/quantization.md`` for which modes run at full speed.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from distiller.errors import ExportError
from distiller.export.onnx import DEFAULT_OPSET, export_img_classifier_to_onnx, unwrap_parallel

__all__ = ["deployment_form", "export_onnx", "is_quantized"]


def _deployable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if hasattr(m, "deploy")]


def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` holds quantized wrappers."""
    return bool(_deployable(unwrap_parallel(model)))


@contextlib.contextmanager
def deployment_form(model: nn.Module) -> Iterator[nn.Module]:
    """Run the model's wrappers in their ONNX form meanwhile (eager results equal the ONNX model's)."""
    wrappers = _deployable(model)
    for m in wrappers:
        if getattr(m, "preset_act_qparams", True) is False:
            raise ExportError(
                "Cannot deploy a dynamic-mode quantized model: its scales change with every batch. "
                "Quantize with calibration statistics (--qe-calibration N, --qe-stats-file, or "
                "distiller.quantize(model, config, calibration_loader))."
            )
    if any(getattr(m, "scale_approx_mult_bits", None) for m in wrappers):
        warnings.warn(
            "scale_approx_mult_bits is simulated only: ONNX Runtime re-quantizes with exact float scales, so "
            "the deployed model differs slightly from the simulation",
            stacklevel=3,
        )
    flags = [(m, m.deploy) for m in wrappers]
    try:
        for m in wrappers:
            m.deploy = True
        yield model
    finally:
        for m, flag in flags:
            m.deploy = flag


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    example_inputs: torch.Tensor | None = None,
    *,
    dataset: str | None = None,
    add_softmax: bool = False,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write ``model`` (float or quantized) to ``path`` as ONNX; quantized models become int8 QDQ models.

    Args:
        model: the model; a quantized one must be in static mode (calibrated).
        path: the ONNX file (written atomically).
        example_inputs: a batch the model accepts (default: from ``dataset``/``model.input_shape``).
        dataset: dataset name giving the input shape when no example is given.
        add_softmax: append a softmax (the CLI's ``--export-onnx`` does, as the original did).
        opset: ONNX opset (13 or later for per-channel quantization).

    Raises:
        ExportError: the model cannot be exported or deployed.
    """
    inner = unwrap_parallel(model)
    if not is_quantized(inner):
        return export_img_classifier_to_onnx(inner, path, dataset, example_inputs, add_softmax=add_softmax, opset=opset)
    if opset < 13:
        raise ExportError(f"Quantized models need ONNX opset 13 or later (per-channel DequantizeLinear); got {opset}.")
    with deployment_form(inner), warnings.catch_warnings():
        # constants are taken from the model on purpose (scales, integer weights): see onnx_ops
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return export_img_classifier_to_onnx(
            inner, path, dataset, example_inputs, add_softmax=add_softmax, opset=opset, do_constant_folding=True
        )
