"""Export of image classifiers to ONNX (``--export-onnx``).

As in the original, the exported network is a non-parallel *copy* of the model in eval mode,
optionally with a softmax appended so that the file outputs class probabilities; the caller's model
is not touched (not even moved between devices). The batch dimension is dynamic, so the file runs
on any batch size.

PyTorch 2.14 has two exporters, and both need the ``onnx`` package. The default here is the
TorchScript-based one (``dynamo=False``): it covers the convolutional classifiers of the zoo and
needs nothing else, while the ``torch.export``-based one also needs ``onnxscript``. Pass
``dynamo=True`` to use the newer one where it is installed. Quantized models are not exported
(neither was the original able to).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from distiller.errors import ExportError
from distiller.fileio import atomic_output
from distiller.graph import example_input as make_example_input

__all__ = ["DEFAULT_OPSET", "SoftmaxOutput", "export_img_classifier_to_onnx", "unwrap_parallel"]

DEFAULT_OPSET = 17
"""Widely supported by runtimes (ONNX Runtime since 1.11) and by both PyTorch exporters."""

_PARALLEL = (nn.DataParallel, nn.parallel.DistributedDataParallel)


class SoftmaxOutput(nn.Module):
    """``softmax(model(x))`` over the last dimension: the exported file outputs probabilities."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(x), dim=-1)


def unwrap_parallel(model: nn.Module) -> nn.Module:
    """The module inside ``DataParallel``/``DistributedDataParallel`` wrappers (or ``model`` itself)."""
    while isinstance(model, _PARALLEL):
        model = model.module
    return model


@contextlib.contextmanager
def _native_stdout_silenced() -> Iterator[None]:
    """Drop what native code writes to file descriptor 1 meanwhile.

    On failure the TorchScript exporter dumps its whole IR graph to the process's stdout from C++
    (PyTorch 2.14), which ``contextlib.redirect_stdout`` cannot catch; the library never prints, and
    the exception already says what failed.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no usable fd 1 (embedded interpreters)
        saved = None
    if saved is None:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ExportError(
            f"ONNX export needs the '{module}' package, which is not installed: pip install '{extra}' "
            f"(or pip install 'distiller-nn[onnx]')."
        )


def export_img_classifier_to_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    dataset: str | None = None,
    example_input: torch.Tensor | None = None,
    add_softmax: bool = True,
    opset: int = DEFAULT_OPSET,
    dynamo: bool = False,
    **export_kwargs: Any,
) -> Path:
    """Write ``model`` to ``path`` as an ONNX file with input ``input`` and output ``output``.

    Args:
        model: the classifier (DataParallel/DDP wrappers are removed from the copy).
        path: the ONNX file; written atomically, its folder created.
        dataset: a dataset name that tells the input shape (default: ``model.input_shape``).
        example_input: an input the model accepts, used to trace it (overrides ``dataset``).
        add_softmax: append a softmax over the classes, as the original did.
        opset: the ONNX opset version.
        dynamo: use the ``torch.export``-based exporter (needs ``onnxscript``).
        **export_kwargs: passed on to :func:`torch.onnx.export`.

    Returns:
        The path written.

    Raises:
        GraphError: the input shape is unknown.
        ExportError: ``onnx`` (or ``onnxscript``) is missing, the model does not export, or ``path``
            cannot be written (an existing file is then unchanged).
    """
    _require("onnx", "onnx")
    if dynamo:
        _require("onnxscript", "onnxscript")
    inner = unwrap_parallel(model)
    if example_input is None:
        example_input = make_example_input(inner, dataset, device="cpu")
    exported = copy.deepcopy(inner).cpu().eval()
    if add_softmax:
        exported = SoftmaxOutput(exported)
    kwargs: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["output"],
        "opset_version": opset,
        "dynamic_axes": {"input": {0: "batch"}, "output": {0: "batch"}},
        "dynamo": dynamo,
        **export_kwargs,
    }
    with atomic_output(path, "ONNX file") as tmp:
        try:
            with warnings.catch_warnings(), _native_stdout_silenced():
                # The TorchScript exporter is chosen on purpose (see the module docstring).
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(exported, (example_input.detach().cpu(),), str(tmp), **kwargs)
        except OSError:
            raise
        except Exception as e:  # the exporters raise many types (OnnxExporterError, RuntimeError, ...)
            message = " ".join(str(e).split())
            message = message if len(message) <= 500 else message[:500] + " ..."
            raise ExportError(f"Cannot export {type(inner).__name__} to ONNX: {type(e).__name__}: {message}") from e
    return Path(path)
