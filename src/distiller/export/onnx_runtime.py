"""Running exported classifiers in ONNX Runtime (``--evaluate --onnx-model``), and ORT's own int8 quantizer.

:class:`OnnxRuntimeModel` wraps an ONNX file in a module-like callable: a float tensor batch goes in,
logits come out as a torch tensor, so the app's evaluation loop (which only calls ``model(x)``)
measures the file exactly as it measures the PyTorch model: same loader, transforms, batch size,
loss and accuracy meters.

Files written by ``--export-onnx`` end with a softmax (as the original's did), which would make the
cross-entropy loss wrong (it expects logits). The wrapper therefore removes a final ``Softmax`` node
from the graph it runs and returns the softmax's input, the logits: accuracy is unchanged (softmax
preserves the order), and the loss equals the PyTorch model's. Pass ``strip_softmax=False`` to get
the file's own output. (The other choice, loss as NLL of ``log(prob)``, loses precision where a
probability underflows to zero, and costs the softmax at every batch.)

:func:`quantize_static_onnx` is ONNX Runtime's own post-training static quantizer (QDQ format,
per-channel int8 weights, uint8 activations, MinMax calibration after ORT's pre-processing),
the baseline that Distiller's int8 export is measured against; :func:`optimized_op_types` tells which
kernels ORT's graph optimizer actually runs (``QLinearConv`` where a QDQ ``Conv`` was fused).

Everything runs on ONNX Runtime's CPU execution provider. ``onnxruntime`` and ``onnx`` are optional
dependencies (``pip install 'distiller-nn[onnx]'``), imported when used.
"""

from __future__ import annotations

import collections
import importlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from distiller.errors import ConfigError, ExportError

__all__ = [
    "OPTIMIZATION_LEVELS",
    "OnnxRuntimeModel",
    "create_session",
    "optimized_op_types",
    "quantize_static_onnx",
    "require_onnxruntime",
    "session_options",
]

OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
"""Names of ONNX Runtime's graph optimization levels (``GraphOptimizationLevel.ORT_ENABLE_ALL``, ...)."""

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise ExportError(
            f"Running ONNX files needs the '{top}' package, which is not installed: pip install {top} "
            "(or pip install 'distiller-nn[onnx]')."
        ) from None


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module; :class:`ExportError` (what to install) where it is missing."""
    return _import("onnxruntime")


def session_options(threads: int | None = None, optimization: str = "all") -> Any:
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads (``None``: ORT's default, one per
    physical core) and the named graph optimization level (one of :data:`OPTIMIZATION_LEVELS`)."""
    ort = require_onnxruntime()
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if optimization not in levels:
        raise ConfigError(f"Unknown ONNX Runtime optimization level {optimization!r}; one of {', '.join(levels)}.")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}.")
    options = ort.SessionOptions()
    options.graph_optimization_level = levels[optimization]
    if threads is not None:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: ORT's warnings go to stderr from C++, past logging
    return options


#: ONNX Runtime 1.32's ``WeightBiasQuantization`` quantizes the *float* weights of a Conv/Gemm that sits
#: between DequantizeLinear and QuantizeLinear (a layer kept float whose output is quantized), which changes
#: what the model computes; disabled so the file runs as exported (and as Distiller simulated it).
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


def create_session(
    model: str | os.PathLike | bytes, *, threads: int | None = None, optimization: str = "all", name: str | None = None
) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU execution provider.

    Args:
        model: an ONNX file, or a serialized model (``name`` then says where it came from in errors).
        threads: intra-op threads (``None``: ORT's default).
        optimization: graph optimization level, one of :data:`OPTIMIZATION_LEVELS`.
        name: what errors call the model (default: the path).

    Raises:
        ExportError: ``onnxruntime`` is missing, or the file is missing or not a model ORT can load.
    """
    ort = require_onnxruntime()
    options = session_options(threads, optimization)
    label = name or str(model)
    if not isinstance(model, bytes):
        path = Path(model)
        if not path.is_file():
            raise ExportError(f"ONNX file {path} does not exist" + (" (it is a folder)." if path.exists() else "."))
        model = str(path)
    try:
        return ort.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
    except Exception as e:  # ORT raises its own pybind types (InvalidProtobuf, Fail, NotImplemented, ...)
        raise ExportError(f"ONNX Runtime cannot load {label}: {_short(e)}") from e


def _short(error: Exception, limit: int = 400) -> str:
    message = " ".join(str(error).split())
    return message if len(message) <= limit else message[:limit] + " ..."


def _without_final_softmax(path: Path) -> bytes | None:
    """The serialized model with its final ``Softmax`` removed (its input becomes the output), or
    ``None`` where the first output is not produced by a softmax."""
    onnx = _import("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise ExportError(f"{path} is not a readable ONNX file: {_short(e)}") from e
    graph = model.graph
    if not graph.output:
        raise ExportError(f"ONNX file {path} has no output.")
    output = graph.output[0]
    producer = next((n for n in graph.node if output.name in n.output), None)
    if producer is None or producer.op_type != "Softmax" or producer.domain not in ("", "ai.onnx"):
        return None
    logits = producer.input[0]
    if any(logits == o.name for o in graph.output):
        return None
    graph.node.remove(producer)
    replacement = onnx.ValueInfoProto()
    replacement.CopyFrom(output)
    replacement.name = logits
    graph.output.remove(output)
    graph.output.insert(0, replacement)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(path.parent))
    return model.SerializeToString()


def _dim(d: Any) -> str:
    return str(d) if isinstance(d, int) else (d or "?")


class OnnxRuntimeModel(nn.Module):
    """An ONNX classifier run by ONNX Runtime (CPU), called like the PyTorch model it was exported from.

    ``model(x)`` takes a float tensor batch (any device) and returns the logits as a float32 tensor on
    the same device. It is an ``nn.Module`` without parameters, so ``.eval()`` and ``.train()`` work
    (and change nothing) and it drops into evaluation loops that only call ``model(x)``; gradients do
    not flow through it.

    Args:
        path: the ONNX file (one input, e.g. ``[batch, 3, 32, 32]``; its first output is used).
        threads: ONNX Runtime intra-op threads (``None``: ORT's default, one per physical core).
        optimization: graph optimization level, one of :data:`OPTIMIZATION_LEVELS`.
        strip_softmax: where the output comes out of a final ``Softmax`` (``--export-onnx`` adds one),
            run the graph without it and return its input, the logits (see the module docstring).

    Attributes:
        input_name, input_shape: the file's input (dynamic dimensions are names, e.g. ``"batch"``).
        output_name: the output returned (the softmax's input when it was removed).
        softmax_removed: whether a final softmax was removed.

    Raises:
        ExportError: ``onnxruntime`` (or ``onnx``, needed to inspect the graph) is missing, the file is
            missing or unreadable, or it does not have exactly one input.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int | None = None,
        optimization: str = "all",
        strip_softmax: bool = True,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        session_options(threads, optimization)  # bad settings (or no onnxruntime) fail first
        if not self.path.is_file():
            create_session(self.path)  # raises the missing-file error
        stripped = _without_final_softmax(self.path) if strip_softmax else None
        self.softmax_removed = stripped is not None
        source = stripped if stripped is not None else self.path
        self.session = create_session(source, threads=threads, optimization=optimization, name=str(self.path))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ExportError(f"ONNX file {self.path} has {len(inputs)} inputs ({names}); a classifier has one.")
        self.input_name: str = inputs[0].name
        self.input_shape: list[int | str | None] = list(inputs[0].shape)
        self.input_type: str = inputs[0].type
        if self.input_type not in _NUMPY_TYPES:
            raise ExportError(
                f"ONNX file {self.path} takes input '{self.input_name}' of type {self.input_type}; "
                f"only float inputs ({', '.join(_NUMPY_TYPES)}) are supported."
            )
        self.output_name: str = self.session.get_outputs()[0].name

    def expected_input(self) -> str:
        """The input as errors describe it: ``'input' [batch, 3, 32, 32] (tensor(float))``."""
        return f"'{self.input_name}' [{', '.join(_dim(d) for d in self.input_shape)}] ({self.input_type})"

    def _check_shape(self, shape: Sequence[int]) -> None:
        expected = self.input_shape
        if len(shape) == len(expected) and all(
            not isinstance(e, int) or e <= 0 or e == s for e, s in zip(expected, shape, strict=True)
        ):
            return
        raise ExportError(
            f"ONNX file {self.path} expects input {self.expected_input()}, got a batch of shape {list(shape)}."
        )

    def run_numpy(self, x: np.ndarray) -> np.ndarray:
        """The output for a NumPy batch (converted to the file's input type); no torch conversion."""
        self._check_shape(x.shape)
        x = np.ascontiguousarray(x, dtype=_NUMPY_TYPES[self.input_type])
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as e:
            where = f"{self.path} (input {self.expected_input()}, batch {list(x.shape)})"
            raise ExportError(f"ONNX Runtime failed on {where}: {_short(e)}") from e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.run_numpy(x.detach().cpu().numpy())
        return torch.from_numpy(np.asarray(output, dtype=np.float32)).to(x.device)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, input={self.expected_input()}, softmax_removed={self.softmax_removed}"


def optimized_op_types(
    path: str | os.PathLike, *, optimization: str = "all", threads: int | None = 1
) -> collections.Counter[str]:
    """Node types of the graph ONNX Runtime runs after its optimizations (CPU provider).

    For a QDQ model this shows whether int8 kernels run: ``QLinearConv`` / ``QGemm`` /
    ``QLinearAdd`` where ``DequantizeLinear -> Conv -> QuantizeLinear`` groups were fused, versus
    float ``Conv`` surrounded by ``QuantizeLinear``/``DequantizeLinear`` where they were not.
    """
    onnx = _import("onnx")
    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = session_options(threads, optimization)
        options.optimized_model_filepath = str(optimized)
        ort = require_onnxruntime()
        if not Path(path).is_file():
            create_session(path)  # the missing-file error
        try:
            ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ExportError(f"ONNX Runtime cannot load {path}: {_short(e)}") from e
        model = onnx.load(str(optimized), load_external_data=False)
    return collections.Counter(node.op_type for node in model.graph.node)


def _as_numpy(batch: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


def quantize_static_onnx(
    model_path: str | os.PathLike,
    output_path: str | os.PathLike,
    calibration: Iterable[torch.Tensor | np.ndarray],
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    activation_type: str = "QUInt8",
    weight_type: str = "QInt8",
    calibrate_method: str = "MinMax",
    preprocess: bool = True,
    extra_options: dict[str, Any] | None = None,
) -> Path:
    """Quantize an FP32 ONNX classifier to int8 with ONNX Runtime's static quantizer (QDQ format).

    Follows ORT's recommendations for CNNs on x86: pre-processing first
    (``quant_pre_process``: symbolic shape inference, ORT graph optimization, ONNX shape inference),
    then ``quantize_static`` with per-channel int8 weights and uint8 activations (U8S8, the fast path
    of ORT's x86 kernels), MinMax ranges from the calibration batches. ``reduce_range`` (7-bit
    weights) only helps CPUs without VNNI, whose U8S8 dot products can saturate.

    Args:
        model_path: the FP32 model, one input (export it without softmax for classifiers).
        output_path: the int8 model to write (its folder is created).
        calibration: input batches (tensors or arrays), e.g. training images with evaluation transforms.
        per_channel, reduce_range, activation_type, weight_type, calibrate_method, extra_options: passed
            on to ``onnxruntime.quantization.quantize_static`` (types and method by name).
        preprocess: run ``quant_pre_process`` first.

    Returns:
        ``output_path``.

    Raises:
        ExportError: ``onnxruntime``/``onnx`` missing, unreadable model, no calibration batch, or ORT's
            quantizer failed.
    """
    quantization = _import("onnxruntime.quantization")
    shape_inference = _import("onnxruntime.quantization.shape_inference")
    model_path, output_path = Path(model_path), Path(output_path)
    session = create_session(model_path, threads=1, optimization="disable")
    input_name = session.get_inputs()[0].name
    batches = [_as_numpy(b) for b in calibration]
    if not batches:
        raise ExportError("quantize_static_onnx needs at least one calibration batch.")

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._batches = iter(batches)

    quant_types = {"QUInt8": quantization.QuantType.QUInt8, "QInt8": quantization.QuantType.QInt8}
    for kind, value in (("activation_type", activation_type), ("weight_type", weight_type)):
        if value not in quant_types:
            raise ConfigError(f"Unknown {kind} {value!r}; one of {', '.join(quant_types)}.")
    methods = {m.name: m for m in quantization.CalibrationMethod}
    if calibrate_method not in methods:
        raise ConfigError(f"Unknown calibrate_method {calibrate_method!r}; one of {', '.join(methods)}.")
    output_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = model_path
            if preprocess:
                source = Path(tmp) / "preprocessed.onnx"
                shape_inference.quant_pre_process(str(model_path), str(source))
            quantization.quantize_static(
                str(source),
                str(output_path),
                Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=reduce_range,
                activation_type=quant_types[activation_type],
                weight_type=quant_types[weight_type],
                calibrate_method=methods[calibrate_method],
                extra_options=extra_options,
            )
    except Exception as e:
        raise ExportError(f"ONNX Runtime's quantizer failed on {model_path}: {type(e).__name__}: {_short(e)}") from e
    return output_path
