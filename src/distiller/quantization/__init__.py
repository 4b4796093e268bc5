"""Quantization: range-linear math, calibration statistics, post-training quantization, int8 export.

* math (the original's ``q_utils``): :mod:`.linear`, :mod:`.ranges`, :mod:`.aciq`, :mod:`.scale_approx`,
  :mod:`.ste`, :mod:`.modes`;
* calibration: :func:`collect_quant_stats`, statistics files (:func:`load_quant_stats`,
  :func:`save_quant_stats`), histograms;
* model preparation: :func:`modularize`, :func:`fold_batch_norms`;
* post-training quantization: :class:`PostTrainLinearQuantizer`, :func:`quantize`;
* deployment: :func:`export_onnx` (int8 ONNX with the simulation's scales).
"""

from distiller.quantization.api import calibrate, quantize, quantizer_config_from_file
from distiller.quantization.calibration import QuantCalibrationStatsCollector, calibration_forward, collect_quant_stats
from distiller.quantization.deploy import deployment_form, export_onnx, is_quantized
from distiller.quantization.modes import ClipMode, LinearQuantMode, ModuleQuantMode
from distiller.quantization.post_train import PostTrainLinearQuantizer
from distiller.quantization.quantizer import QBits, Quantizer
from distiller.quantization.stats_file import load_quant_stats, save_quant_stats
from distiller.registry import Registry

QUANTIZERS: Registry[type] = Registry("quantizer")
QUANTIZERS.register("PostTrainLinearQuantizer", PostTrainLinearQuantizer)

__all__ = [
    "QUANTIZERS",
    "ClipMode",
    "LinearQuantMode",
    "ModuleQuantMode",
    "PostTrainLinearQuantizer",
    "QBits",
    "QuantCalibrationStatsCollector",
    "Quantizer",
    "calibrate",
    "calibration_forward",
    "collect_quant_stats",
    "deployment_form",
    "export_onnx",
    "is_quantized",
    "load_quant_stats",
    "quantize",
    "quantizer_config_from_file",
    "save_quant_stats",
]
