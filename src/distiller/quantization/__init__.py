"""Quantization: range-linear math, calibration statistics, post-training quantization, int8 export.

* math (the original's ``q_utils``): :mod:`.linear`, :mod:`.ranges`, :mod:`.aciq`, :mod:`.scale_approx`,
  :mod:`.ste`, :mod:`.modes`;
* calibration: :func:`collect_quant_stats`, statistics files (:func:`load_quant_stats`,
  :func:`save_quant_stats`), histograms;
* model preparation: :func:`modularize`, :func:`fold_batch_norms`;
* post-training quantization: :class:`PostTrainLinearQuantizer`, :func:`quantize`;
* search: LAPQ (:func:`ptq_coordinate_search`), greedy clip-mode search (:func:`ptq_greedy_search`);
* deployment: :func:`export_onnx` (int8 ONNX with the simulation's scales); PyTorch's deprecated
  quantized modules through :func:`distiller.quantization.pytorch_convert.convert_to_pytorch`.
"""

from distiller.quantization.api import calibrate, quantize, quantizer_config_from_file
from distiller.quantization.calibration import QuantCalibrationStatsCollector, calibration_forward, collect_quant_stats
from distiller.quantization.clipped_linear import (
    ClippedLinearQuantization,
    DorefaQuantizer,
    LearnedClippedLinearQuantization,
    PACTQuantizer,
    WRPNQuantizer,
)
from distiller.quantization.deploy import deployment_form, export_onnx, is_quantized
from distiller.quantization.greedy_search import ptq_greedy_search
from distiller.quantization.lapq import lapq_eval_fn, ptq_coordinate_search
from distiller.quantization.lsq import LSQActivationQuantization, LSQQuantizer, LSQWrapper
from distiller.quantization.modes import ClipMode, LinearQuantMode, ModuleQuantMode
from distiller.quantization.post_train import PostTrainLinearQuantizer
from distiller.quantization.qat_export import QATConversion, convert_qat_to_ptq
from distiller.quantization.quantizer import QBits, Quantizer, deploy_state_dict, strip_fp_copy
from distiller.quantization.range_linear_qat import (
    FakeLinearQuantization,
    FakeQuantizationWrapper,
    NCFQuantAwareTrainQuantizer,
    QuantAwareTrainRangeLinearQuantizer,
)
from distiller.quantization.stats_file import load_quant_stats, save_quant_stats
from distiller.registry import Registry

QUANTIZERS: Registry[type] = Registry("quantizer")
QUANTIZERS.register("PostTrainLinearQuantizer", PostTrainLinearQuantizer)
QUANTIZERS.register("QuantAwareTrainRangeLinearQuantizer", QuantAwareTrainRangeLinearQuantizer)
QUANTIZERS.register("NCFQuantAwareTrainQuantizer", NCFQuantAwareTrainQuantizer)
QUANTIZERS.register("DorefaQuantizer", DorefaQuantizer)
QUANTIZERS.register("PACTQuantizer", PACTQuantizer)
QUANTIZERS.register("WRPNQuantizer", WRPNQuantizer)
QUANTIZERS.register("LSQQuantizer", LSQQuantizer)

__all__ = [
    "QATConversion",
    "convert_qat_to_ptq",
    "LSQActivationQuantization",
    "LSQQuantizer",
    "LSQWrapper",
    "QUANTIZERS",
    "ClipMode",
    "ClippedLinearQuantization",
    "DorefaQuantizer",
    "FakeLinearQuantization",
    "FakeQuantizationWrapper",
    "LearnedClippedLinearQuantization",
    "LinearQuantMode",
    "ModuleQuantMode",
    "NCFQuantAwareTrainQuantizer",
    "PACTQuantizer",
    "PostTrainLinearQuantizer",
    "QBits",
    "QuantAwareTrainRangeLinearQuantizer",
    "QuantCalibrationStatsCollector",
    "Quantizer",
    "WRPNQuantizer",
    "calibrate",
    "calibration_forward",
    "collect_quant_stats",
    "deploy_state_dict",
    "deployment_form",
    "export_onnx",
    "is_quantized",
    "lapq_eval_fn",
    "load_quant_stats",
    "ptq_coordinate_search",
    "ptq_greedy_search",
    "quantize",
    "quantizer_config_from_file",
    "save_quant_stats",
    "strip_fp_copy",
]
