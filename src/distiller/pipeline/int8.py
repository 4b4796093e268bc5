"""The int8 stage: post-training quantization, or quantization-aware training, to an int8 ONNX model.

Both paths end in the same deployable form, a static-mode
:class:`~distiller.quantization.PostTrainLinearQuantizer` model that
:func:`~distiller.quantization.export_onnx` writes as a QDQ model with int8 weights and uint8
activations, which ONNX Runtime runs with integer kernels (``QLinearConv``, ``QGemm``):

* **PTQ**: :func:`~distiller.quantization.quantize` calibrates activation ranges on training images;
* **QAT**: :class:`~distiller.quantization.QuantAwareTrainRangeLinearQuantizer` (8-bit, the same modes)
  trains a few epochs through fake quantization, then
  :func:`~distiller.quantization.convert_qat_to_ptq` carries its grids over.

The candidates are compared on the *validation* split (the test set only reports): in ``auto`` mode
QAT runs only when PTQ loses more than ``qat_threshold`` points against the float model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import DataLoader

from distiller.pipeline.stages import RunContext
from distiller.quantization import (
    QuantAwareTrainRangeLinearQuantizer,
    convert_qat_to_ptq,
    export_onnx,
    quantize,
)

__all__ = ["INT8_PTQ_CONFIG", "Int8Result", "quantize_int8", "save_int8"]

INT8_PTQ_CONFIG = {
    "bits_activations": 8,
    "bits_parameters": 8,
    "bits_accum": 32,
    "mode": {"activations": "asymmetric_unsigned", "weights": "symmetric"},
    "per_channel_wts": True,
    "clip_acts": "none",
}
"""Post-training quantization for ONNX Runtime's x86 fast path: per-channel symmetric int8 weights,
asymmetric uint8 activations, min/max ranges (``PostTrainLinearQuantizer``'s arguments)."""

_QAT_MODE = {"activations": "asymmetric_unsigned", "weights": "symmetric"}


@dataclass
class Int8Result:
    """The chosen int8 model and how it was made.

    Attributes:
        model: the static-mode quantized model (deployable).
        method: ``"ptq"`` or ``"qat"``.
        valid_top1: validation top-1 of each candidate tried (PyTorch simulation), and of the float model.
        calibration_images: training images that calibrated the ranges.
    """

    model: nn.Module
    method: str
    valid_top1: dict[str, float]
    calibration_images: int


def _qat(ctx: RunContext, model: nn.Module, calibration: DataLoader) -> nn.Module:
    """Quantization-aware training of a copy of ``model``, converted to its post-training form."""
    c = ctx.config
    work = copy.deepcopy(model)
    optimizer = ctx.trainer.optimizer(work, c.finetune_lr * 0.1)
    quantizer = QuantAwareTrainRangeLinearQuantizer(
        work, optimizer, bits_activations=8, bits_weights=8, bits_bias=32, mode=_QAT_MODE, per_channel_wts=True
    )
    quantizer.prepare_model(ctx.example[:1])
    ctx.trainer.train(work, c.qat_epochs, optimizer, stage="qat")
    return convert_qat_to_ptq(work, quantizer, ctx.example[:1], calibration)


def quantize_int8(ctx: RunContext, model: nn.Module) -> Int8Result:
    """Quantize ``model`` (not changed) as ``config.quantization`` says; keep the better candidate."""
    c = ctx.config
    calibration = ctx.trainer.loaders.calibration_loader(c.calibration_size)
    valid = {"fp32": ctx.trainer.validate(model).top1}
    candidates: dict[str, nn.Module] = {}
    if c.quantization in ("ptq", "auto"):
        candidates["ptq"] = quantize(model, INT8_PTQ_CONFIG, calibration, example_input=ctx.example[:1])
        valid["ptq"] = ctx.trainer.validate(candidates["ptq"]).top1
    ptq_loses = "ptq" in valid and valid["ptq"] < valid["fp32"] - c.qat_threshold
    if c.quantization == "qat" or (c.quantization == "auto" and c.qat_epochs and ptq_loses):
        candidates["qat"] = _qat(ctx, model, calibration)
        valid["qat"] = ctx.trainer.validate(candidates["qat"]).top1
    method = max(candidates, key=lambda m: (valid[m], m == "ptq"))  # a tie goes to the simpler PTQ
    return Int8Result(candidates[method], method, valid, len(calibration.sampler))  # type: ignore[arg-type]


def save_int8(ctx: RunContext, result: Int8Result, thinned: nn.Module) -> Path:
    """Write ``int8.onnx`` (QDQ) and ``int8.pth.tar`` (the quantized model with its quantizer's metadata
    and the thinning plans of the float model it quantizes); return the ONNX file."""
    from distiller.thinning import applied_thinning_plans

    path = export_onnx(result.model, ctx.run_dir / "int8.onnx", ctx.example[:1])
    ctx.saved.append(path)
    quantizer = getattr(result.model, "quantizer", None)
    metadata = dict(getattr(result.model, "quantizer_metadata", None) or {})
    if quantizer is not None:
        metadata["dummy_input_shape"] = list(getattr(quantizer, "dummy_input_shape", []))
    ctx.save_checkpoint(
        result.model,
        "int8",
        thinning_plans=applied_thinning_plans(thinned),
        quantizer_metadata=metadata,
        extras={"int8_method": result.method},
    )
    return path
